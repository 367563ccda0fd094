package partition_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appliance/appliance/firmware/partition"
	"github.com/appliance/appliance/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite firmware/sensor/partitions-*.csv from Layout")

// hand4MB is the 4 MB table's entries written out by hand from the
// gen_esp32part struct '<2sBBLL16sL': magic, type, subtype, offset,
// size, label, flags.
var hand4MB = []string{
	"aa50" + "01" + "02" + "00900000" + "00400000" + hex.EncodeToString([]byte("nvs")) + strings.Repeat("00", 13) + "00000000",
	"aa50" + "01" + "00" + "00d00000" + "00200000" + hex.EncodeToString([]byte("otadata")) + strings.Repeat("00", 9) + "00000000",
	"aa50" + "01" + "01" + "00f00000" + "00100000" + hex.EncodeToString([]byte("phy_init")) + strings.Repeat("00", 8) + "00000000",
	"aa50" + "01" + "83" + "00000100" + "00000300" + hex.EncodeToString([]byte("littlefs")) + strings.Repeat("00", 8) + "00000000",
	"aa50" + "00" + "10" + "00000400" + "00001e00" + hex.EncodeToString([]byte("ota_0")) + strings.Repeat("00", 11) + "00000000",
	"aa50" + "00" + "11" + "00002200" + "00001e00" + hex.EncodeToString([]byte("ota_1")) + strings.Repeat("00", 11) + "00000000",
}

// TestBinaryByHand compares the 4 MB table with the rows above and its
// MD5 row with the MD5 md5sum computes of them.
func TestBinaryByHand(t *testing.T) {
	testenv.Require(t, "md5sum")
	tab, err := partition.Layout(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tab.Binary()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := hex.DecodeString(strings.Join(hand4MB, ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 0xC00 {
		t.Fatalf("table of %#x bytes, want 0xc00", len(b))
	}
	if !bytes.Equal(b[:len(entries)], entries) {
		t.Errorf("entries:\n%x\nwant\n%x", b[:len(entries)], entries)
	}
	cmd := exec.Command("md5sum")
	cmd.Stdin = bytes.NewReader(entries)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	md5row := "ebeb" + strings.Repeat("ff", 14) + strings.Fields(string(out))[0]
	if got := hex.EncodeToString(b[len(entries) : len(entries)+32]); got != md5row {
		t.Errorf("MD5 row %s, want %s", got, md5row)
	}
	if rest := b[len(entries)+32:]; !bytes.Equal(rest, bytes.Repeat([]byte{0xFF}, len(rest))) {
		t.Error("the table is not 0xFF after the MD5 row")
	}
}

func TestLayouts(t *testing.T) {
	for _, mb := range []int{2, 4, 8, 16, 32} {
		tab, err := partition.Layout(mb << 20)
		if err != nil {
			t.Fatalf("%d MB: %v", mb, err)
		}
		ota0, _ := tab.Find("ota_0")
		ota1, _ := tab.Find("ota_1")
		fs, _ := tab.Find("littlefs")
		// The identity right after phy_init, then the two slots of one
		// size, within the flash.
		if ota0.Size != ota1.Size || ota0.Offset+ota0.Size != ota1.Offset || fs.Offset != 0x10000 || fs.Offset+fs.Size > ota0.Offset || ota1.Offset+ota1.Size > uint32(mb<<20) {
			t.Errorf("%d MB: ota_0 %+v, ota_1 %+v, littlefs %+v", mb, ota0, ota1, fs)
		}
		if _, ok := tab.Find("factory"); ok {
			t.Errorf("%d MB layout has a factory slot", mb)
		}
		b, err := tab.Binary()
		if err != nil {
			t.Fatal(err)
		}
		back, err := partition.ParseBinary(b)
		if err != nil || !equal(back, tab) {
			t.Errorf("%d MB: binary read back as %v, %v", mb, back, err)
		}
		csv, err := partition.ParseCSV(tab.CSV())
		if err != nil || !equal(csv, tab) {
			t.Errorf("%d MB: CSV read back as %v, %v", mb, csv, err)
		}
	}
	if _, err := partition.Layout(3 << 20); err == nil {
		t.Error("a 3 MB layout is made")
	}
}

// TestSensorCSV: the C firmware's partitions-*.csv files are the
// layouts, byte for byte, and read back to the same binary table.
func TestSensorCSV(t *testing.T) {
	for _, mb := range []int{4, 8} {
		tab, err := partition.Layout(mb << 20)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join("..", "sensor", "partitions-"+string(rune('0'+mb))+"MB.csv")
		if *update {
			if err := os.WriteFile(p, []byte(tab.CSV()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run go test -update to write it)", err)
		}
		if string(b) != tab.CSV() {
			t.Errorf("%s differs from Layout(%d MB); run go test ./firmware/partition -update", p, mb)
		}
		parsed, err := partition.ParseCSV(string(b))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := tab.Binary()
		got, err := parsed.Binary()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s does not make the layout's binary table: %v", p, err)
		}
	}
}

func TestRefuses(t *testing.T) {
	good, _ := partition.Layout(4 << 20)
	mod := func(f func(t partition.Table) partition.Table) partition.Table {
		return f(append(partition.Table(nil), good...))
	}
	for _, tc := range []struct {
		name string
		t    partition.Table
		want string
	}{
		{"app unaligned", mod(func(t partition.Table) partition.Table { t[4].Offset += 0x1000; return t }), "starts on 64 KiB"},
		{"overlap", mod(func(t partition.Table) partition.Table { t[4].Offset -= 0x10000; return t }), "overlaps"},
		{"otadata size", mod(func(t partition.Table) partition.Table { t[1].Size = 0x1000; return t }), "0x2000"},
		{"no otadata", mod(func(t partition.Table) partition.Table { return append(t[:1], t[2:]...) }), "one otadata"},
		{"small nvs", mod(func(t partition.Table) partition.Table { t[0].Size = 0x2000; return t }), "at least 0x3000"},
		{"long label", mod(func(t partition.Table) partition.Table { t[5].Name = "a-label-of-17-byt"; return t }), "1 to 16 bytes"},
		{"before the table", mod(func(t partition.Table) partition.Table { t[0].Offset = 0x8000; return t }), "overlaps the partition table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.t.Validate(4 << 20)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	if err := good.Validate(2 << 20); err == nil || !strings.Contains(err.Error(), "past the 2 MB flash") {
		t.Errorf("a 4 MB table on 2 MB: %v", err)
	}
	b, _ := good.Binary()
	b[5] ^= 1
	if _, err := partition.ParseBinary(b); err == nil || !strings.Contains(err.Error(), "MD5") {
		t.Errorf("a damaged table reads: %v", err)
	}
	if _, err := partition.ParseCSV("nvs, data, nvs, , 0x4000\n"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a row without offset: %v", err)
	}
}

func equal(a, b partition.Table) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
