package ext4_test

import (
	"testing"

	"github.com/appliance/appliance/images/ext4"
	"github.com/appliance/appliance/images/internal/dirtree"
)

// TestHostTree writes thousands of real files: the host's documentation,
// with its symlinks and compressed changelogs.
func TestHostTree(t *testing.T) {
	es, err := dirtree.Entries("/usr/share/doc")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) < 1000 {
		t.Fatalf("/usr/share/doc has %d entries; the test wants a real tree of thousands", len(es))
	}
	img := ext4.WriteImage(t, es, ext4.TestOptions(256<<20))
	ext4.Fsck(t, img)
	ext4.CheckDebugfs(t, img, es)
	ext4.CheckMounted(t, img, es)
}
