package mbr

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func need(t *testing.T, progs ...string) {
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is needed (scripts/deps installs it): %v", p, err)
		}
	}
}

var parts = []Partition{
	{Type: TypeFAT32LBA, Start: 4 << 20, Size: 64 << 20},
	{Type: TypeLinux, Start: 68 << 20, Size: 956 << 20},
}

// TestSfdisk: sfdisk reads the table as designed, and writes the same
// sector for the same layout, CHS fields included.
func TestSfdisk(t *testing.T) {
	need(t, "sfdisk")
	dir := memDir(t)
	ours, theirs := filepath.Join(dir, "ours.img"), filepath.Join(dir, "theirs.img")
	for _, p := range []string{ours, theirs} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 1<<30); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(ours, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(f, 0x1234abcd, parts); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out, err := exec.Command("sfdisk", "--json", ours).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	var got struct {
		PartitionTable struct {
			Label, ID  string
			Partitions []struct {
				Start, Size int64
				Type        string
				Bootable    bool
			}
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	pt := got.PartitionTable
	if pt.Label != "dos" || pt.ID != "0x1234abcd" || len(pt.Partitions) != 2 {
		t.Fatalf("sfdisk reads label %q, id %q, %d partitions; want dos, 0x1234abcd, 2\n%s", pt.Label, pt.ID, len(pt.Partitions), out)
	}
	for i, want := range []struct {
		start, size int64
		typ         string
	}{{8192, 131072, "c"}, {139264, 1957888, "83"}} {
		p := pt.Partitions[i]
		if p.Start != want.start || p.Size != want.size || p.Type != want.typ || p.Bootable {
			t.Errorf("partition %d: start %d size %d type %s; want %d %d %s", i+1, p.Start, p.Size, p.Type, want.start, want.size, want.typ)
		}
	}
	if out, err := exec.Command("sfdisk", "--verify", ours).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("No errors detected")) {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}

	script := "label: dos\nlabel-id: 0x1234abcd\n8192,131072,c\n139264,1957888,83\n"
	cmd := exec.Command("sfdisk", "-q", theirs)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	a, b := sector(t, ours), sector(t, theirs)
	if !bytes.Equal(a, b) {
		t.Errorf("our table differs from sfdisk's:\nours   %x\nsfdisk %x", a[440:], b[440:])
	}
}

// memDir is a temporary directory in memory where there is one: sfdisk
// fsyncs what it writes, which on a disk waits for everything else the
// tests have written.
func memDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "mbr-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func sector(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b[:SectorSize]
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []Partition
		want  string
	}{
		{"five", make([]Partition, 5), "an MBR holds 4"},
		{"overlap", []Partition{{Type: 0x83, Start: 1 << 20, Size: 2 << 20}, {Type: 0x83, Start: 2 << 20, Size: 1 << 20}}, "partition 2 starts at 2097152, before the end"},
		{"unaligned", []Partition{{Type: 0x83, Start: 1000, Size: 1 << 20}}, "whole, non-empty sectors"},
		{"on the table", []Partition{{Type: 0x83, Start: 0, Size: 1 << 20}}, "before the end"},
		{"type 0", []Partition{{Start: 1 << 20, Size: 1 << 20}}, "type 0"},
		{"past 2 TiB", []Partition{{Type: 0x83, Start: 1 << 20, Size: 2 << 40}}, "2 TiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(1, tc.parts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Encode = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPartUUID(t *testing.T) {
	if got, want := PartUUID(0x1234abcd, 2), "1234abcd-02"; got != want {
		t.Errorf("PartUUID = %q; want %q", got, want)
	}
}
