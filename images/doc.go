// Package images will turn a site's desired gateway state into a disk
// image: the apt client and resolver, the package cache, .deb unpacking
// into a file tree, ext4/FAT/MBR writing, the boards, the initramfs and
// the build outputs. It is empty until the root file system work lands;
// until then appliance stops after plan.
package images
