package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestPut: content is stored under its hash and only there; content of
// another hash is refused and leaves nothing behind.
func TestPut(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	if err := c.Put("debs", sum("good"), strings.NewReader("good")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(c.Path("debs", sum("good"))); err != nil || string(b) != "good" || !strings.HasSuffix(c.Path("debs", sum("good")), ".deb") {
		t.Errorf("stored %q, %v", b, err)
	}
	err := c.Put("debs", sum("expected"), strings.NewReader("evil"))
	var hm *HashMismatchError
	if !errors.As(err, &hm) || hm.Got != sum("evil") {
		t.Errorf("wrong content: %v", err)
	}
	if c.Has("debs", sum("expected")) {
		t.Error("refused content was kept")
	}
	if tmp, _ := c.Temporaries(); len(tmp) > 0 {
		t.Errorf("temporaries left: %v", tmp)
	}
	w, _ := c.Create("blobs", "")
	w.Write([]byte("content"))
	got, created, err := w.CommitAs(c, "blobs")
	if err != nil || got != sum("content") || !created || !c.Has("blobs", got) {
		t.Errorf("CommitAs: %s %v %v", got, created, err)
	}
	w, _ = c.Create("blobs", "")
	w.Write([]byte("content"))
	if _, created, _ := w.CommitAs(c, "blobs"); created {
		t.Error("the same content was created twice")
	}
	// A damaged file is found and removed.
	os.WriteFile(c.Path("blobs", got), []byte("rot"), 0o644)
	if err := c.Verify("blobs", got); err == nil || c.Has("blobs", got) {
		t.Errorf("Verify of a damaged file: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"HOME=/home/u", "XDG_CACHE_HOME=/x"}, "/x/appliance"},
		{[]string{"HOME=/home/u", "XDG_CACHE_HOME=relative"}, "/home/u/.cache/appliance"},
		{[]string{"HOME=/home/u"}, "/home/u/.cache/appliance"},
	} {
		c, err := FromEnv(tc.env)
		if err != nil || c.Dir != filepath.Clean(tc.want) {
			t.Errorf("FromEnv(%v) = %v, %v; want %s", tc.env, c, err, tc.want)
		}
	}
	if _, err := FromEnv(nil); err == nil {
		t.Error("no HOME and no XDG_CACHE_HOME gave a cache")
	}
}

// TestHostileKeys: a key that is not a SHA-256 in hex — from a hostile
// index or manifest — never names a path outside the cache, and nothing
// is stored under it.
func TestHostileKeys(t *testing.T) {
	c := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	for _, key := range []string{
		"../../../../../../../../../../../../../../../../../../../../../x",
		strings.Repeat("A", 64), "", "ab", sum("x")[:63] + "/",
	} {
		p := c.Path("debs", key)
		if rel, err := filepath.Rel(c.Dir, p); err != nil || strings.HasPrefix(rel, "..") || filepath.Base(p) != "invalid" {
			t.Errorf("Path(%q) = %s", key, p)
		}
		if key == "" {
			continue
		}
		if _, err := c.Create("debs", key); err == nil {
			t.Errorf("Create(%q) accepted it", key)
		}
		if err := c.PutAt("manifests", key, []byte("{}")); err == nil {
			t.Errorf("PutAt(%q) accepted it", key)
		}
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "invalid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was stored as invalid: %v", err)
	}
	// A named file planted larger than its bound is not read.
	os.MkdirAll(filepath.Join(c.Dir, "releases"), 0o755)
	os.WriteFile(filepath.Join(c.Dir, "releases", "big"), make([]byte, 2048), 0o644)
	if _, err := c.GetNamed("releases", "big", 1024); err == nil {
		t.Error("GetNamed read a file past its bound")
	}
	if b, err := c.GetNamed("releases", "big", 4096); err != nil || len(b) != 2048 {
		t.Errorf("GetNamed within the bound: %d bytes, %v", len(b), err)
	}
}
