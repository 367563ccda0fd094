package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ModuleSource reads files of the root file system the kernel comes
// from, such as "usr/lib/modules/6.12.38+deb13-arm64/modules.builtin".
type ModuleSource interface {
	ReadFile(name string) ([]byte, error)
	// Glob lists the files under a folder, recursively, as paths relative
	// to the root.
	Walk(dir string, fn func(path string) error) error
}

// Module is a kernel module to load, decompressed.
type Module struct {
	Name string
	Data []byte
}

// Modules finds the named modules of kernel version kver and everything
// they depend on, and returns them in the order they must be loaded: the
// dependencies of each before it, the named ones in the order given.
// Modules built into the kernel are left out; a name neither built in
// nor found is an error.
func Modules(src ModuleSource, kver string, wanted []string) ([]Module, error) {
	dir := "usr/lib/modules/" + kver
	builtin := map[string]bool{}
	if b, err := src.ReadFile(dir + "/modules.builtin"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			builtin[modName(sc.Text())] = true
		}
	} else {
		return nil, fmt.Errorf("kernel %s has no modules.builtin: %w", kver, err)
	}
	files := map[string]string{}
	err := src.Walk(dir+"/kernel", func(p string) error {
		if n := modName(p); n != "" {
			files[n] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var order []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		switch {
		case state[name] == 2 || builtin[name]:
			return nil
		case state[name] == 1:
			return fmt.Errorf("kernel modules depend on each other in a circle: %s", strings.Join(append(chain, name), " → "))
		}
		p, ok := files[name]
		if !ok {
			return fmt.Errorf("kernel %s has no module %s (needed by %s) and does not build it in", kver, name, strings.Join(chain, " → "))
		}
		state[name] = 1
		data, err := src.ReadFile(p)
		if err != nil {
			return err
		}
		if data, err = decompress(p, data); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		deps, err := dependsOf(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, Module{Name: name, Data: data})
		return nil
	}
	// In the caller's order: a module another needs without depending on
	// it (crc32c for ext4) is named first.
	for _, w := range wanted {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modName turns "kernel/fs/ext4/ext4.ko.xz" into "ext4"; module names
// use underscores where file names may have dashes.
func modName(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if n, ok := strings.CutSuffix(base, ext); ok {
			return strings.ReplaceAll(n, "-", "_")
		}
	}
	return ""
}

// decompress undoes the compression Debian applies to modules; the
// initramfs holds them plain so the kernel needs no decompressor for them.
func decompress(name string, data []byte) ([]byte, error) {
	var r io.Reader
	switch {
	case strings.HasSuffix(name, ".xz"):
		xr, err := xz.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		r = xr
	case strings.HasSuffix(name, ".zst"):
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	default:
		return data, nil
	}
	return io.ReadAll(r)
}

// dependsOf reads the depends= entry of a module's .modinfo section.
func dependsOf(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
