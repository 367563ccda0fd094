// Package outputs is the contract of a build's output folder, out/SITE:
// the names of its files and the facts build-info.json records. The
// tools that use a finished build — appliance vm, push, the node
// commands — read it through this package, not through the build.
//
//	gateway.img         the SD card image (and .bmap, .zst beside it)
//	sbom.cdx.json       CycloneDX SBOM of the image and the nodes' firmware
//	build-info.json     Info: inputs' digest, versions, listeners, nodes, outputs
//	SHA256SUMS          digests of the other files
//	boot/               kernel, initramfs, command line (and device tree) that
//	                    QEMU boots (qemu-arm64, and Pis booted from Debian)
//	nodes/NODE/         a node's flash bundle
//	.appliance-output   marks the folder as a build's own
package outputs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Names of the files of an output folder.
const (
	ImageName  = "gateway.img"
	InfoName   = "build-info.json"
	SumsName   = "SHA256SUMS"
	SBOMName   = "sbom.cdx.json"
	BootDir    = "boot"
	NodesDir   = "nodes"
	MarkerName = ".appliance-output"
)

// Names of the files in BootDir.
const (
	BootKernel  = "vmlinuz"
	BootInitrd  = "initrd.img"
	BootCmdline = "cmdline.txt"
	BootDTB     = "board.dtb"
)

// Info is build-info.json: what went into the build, what the gateway
// listens on, what each node gets, and how long each step took.
type Info struct {
	Site      string `json:"site"`
	Board     string `json:"board"`
	Hostname  string `json:"hostname"`
	Admin     string `json:"admin"`
	Appliance string `json:"appliance"`
	Go        string `json:"go"`
	// Key hashes every input; an unchanged key means nothing to rebuild.
	Key              string `json:"key"`
	Lock             string `json:"lock"`
	Packages         int    `json:"packages"`
	Kernel           string `json:"kernel"`
	Cmdline          string `json:"cmdline"`
	DiskID           string `json:"disk_id"`
	InitramfsModules int    `json:"initramfs_modules,omitempty"`
	SourceDateEpoch  *int64 `json:"source_date_epoch,omitempty"`
	// Listeners are the ports the gateway serves on its network.
	Listeners []Listener `json:"listeners"`
	// Nodes are the sensor nodes the build made bundles for.
	Nodes   []Node   `json:"nodes,omitempty"`
	Outputs []Output `json:"outputs"`
	Timings []Timing `json:"timings"`
	Seconds float64  `json:"seconds"`
}

// Listener is a port the gateway serves on its network.
type Listener struct {
	Port  int    `json:"port"`
	Proto string `json:"proto"`
	// Setting is the spec setting that chose it ("mqtt.port"), empty for
	// fixed ports.
	Setting string `json:"setting,omitempty"`
	Purpose string `json:"purpose"`
}

// Node is what a build made for one sensor node.
type Node struct {
	Name     string `json:"name"`
	Firmware string `json:"firmware"`
	Version  string `json:"version"`
	Chip     string `json:"chip"`
	// App says whether the bundle holds the signed app (false when the
	// spec's firmware names no image).
	App bool `json:"app"`
	// CertExpires is when the node's certificate ends (RFC 3339).
	CertExpires string `json:"cert_expires,omitempty"`
}

// Output is one file the build wrote.
type Output struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Timing is one step's wall time.
type Timing struct {
	Step    string  `json:"step"`
	Seconds float64 `json:"seconds"`
}

// ReadInfo reads the build-info.json of an output folder.
func ReadInfo(dir string) (*Info, error) {
	b, err := os.ReadFile(filepath.Join(dir, InfoName))
	if err != nil {
		return nil, err
	}
	var i Info
	if err := json.Unmarshal(b, &i); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, InfoName), err)
	}
	return &i, nil
}

// WriteInfo writes an output folder's build-info.json.
func WriteInfo(dir string, i *Info) error {
	b, err := json.MarshalIndent(i, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, InfoName), append(b, '\n'), 0o644)
}

// NodeDir is the folder of a node's flash bundle in an output folder.
func NodeDir(out, node string) string { return filepath.Join(out, NodesDir, node) }

// Listener returns the listener a spec setting chose, or nil.
func (i *Info) Listener(setting string) *Listener {
	for k := range i.Listeners {
		if i.Listeners[k].Setting == setting {
			return &i.Listeners[k]
		}
	}
	return nil
}
