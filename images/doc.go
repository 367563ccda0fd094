// Package images turns a site's desired gateway state (package desired)
// into a disk image. Its sub-packages:
//
//   - apt: the repository client (signed Release, verified indexes)
//   - resolve: the package set apt would install
//   - cache: downloads, unpacked packages and frames by SHA-256
//   - deb: reading .debs
//   - tree: the root file system model
//   - rootfs: plan, fetch and unpack into a tree with the dpkg database,
//     the lock file, the tree as ext4 entries
//   - sbom: CycloneDX
//   - ext4, fat, mbr, disk, bmap, sparse, zst: the disk writers and the
//     compressed copy
//   - boards: a board's boot partition and kernel command line
//   - initramfs: the initial RAM file system
//   - gobin: appliance's programs for the gateway
//   - fixture: apt repositories for tests, hostile ones among them
//   - build: the whole build, as a list of steps
//   - vm, flash: booting a build under QEMU, writing it to a card
package images
