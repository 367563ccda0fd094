// Package images turns a site's desired gateway state into a disk
// image. Its sub-packages: apt (repository client: signed Release,
// verified indexes), resolve (the package set apt would install), cache
// (downloads and unpacked packages by SHA-256), deb (reading .debs),
// tree (the root file system model), rootfs (plan, fetch and unpack into
// a tree with the dpkg database, the lock file, the tree as ext4
// entries), sbom (CycloneDX), and the disk writers ext4, fat, mbr, disk
// and bmap, with initramfs and gobin.
package images
