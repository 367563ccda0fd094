package ext4

import "math/bits"

// dirHash is ext4's half-MD4 directory hash of name, with name bytes
// taken unsigned (the superblock says so: flagsUnsignedHash). It returns
// the major hash, low bit cleared as the kernel keeps it, and the minor.
func dirHash(name string, seed [16]byte) (uint32, uint32) {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != ([16]byte{}) {
		for i := range buf {
			buf[i] = le.Uint32(seed[4*i:])
		}
	}
	var in [8]uint32
	for p := name; ; p = p[32:] {
		hashBuf(p, in[:])
		halfMD4(&buf, &in)
		if len(p) <= 32 {
			break
		}
	}
	hash := buf[1] &^ 1
	if hash == 0x7fffffff<<1 { // the end-of-directory marker
		hash = (0x7fffffff - 1) << 1
	}
	return hash, buf[2]
}

// hashBuf packs up to 32 bytes of s into words, padded with its length.
func hashBuf(s string, out []uint32) {
	pad := uint32(len(s)) | uint32(len(s))<<8
	pad |= pad << 16
	val := pad
	s = s[:min(len(s), 4*len(out))]
	n := 0
	for i := 0; i < len(s); i++ {
		val = uint32(s[i]) + val<<8
		if i%4 == 3 {
			out[n] = val
			n++
			val = pad
		}
	}
	if n < len(out) {
		out[n] = val
		n++
	}
	for ; n < len(out); n++ {
		out[n] = pad
	}
}

func halfMD4(buf *[4]uint32, in *[8]uint32) {
	const k2, k3 = 0o13240474631, 0o15666365641
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	r := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s int) {
		*a = bits.RotateLeft32(*a+fn(b, c, d)+x, s)
	}
	r(f, &a, b, c, d, in[0], 3)
	r(f, &d, a, b, c, in[1], 7)
	r(f, &c, d, a, b, in[2], 11)
	r(f, &b, c, d, a, in[3], 19)
	r(f, &a, b, c, d, in[4], 3)
	r(f, &d, a, b, c, in[5], 7)
	r(f, &c, d, a, b, in[6], 11)
	r(f, &b, c, d, a, in[7], 19)

	r(g, &a, b, c, d, in[1]+k2, 3)
	r(g, &d, a, b, c, in[3]+k2, 5)
	r(g, &c, d, a, b, in[5]+k2, 9)
	r(g, &b, c, d, a, in[7]+k2, 13)
	r(g, &a, b, c, d, in[0]+k2, 3)
	r(g, &d, a, b, c, in[2]+k2, 5)
	r(g, &c, d, a, b, in[4]+k2, 9)
	r(g, &b, c, d, a, in[6]+k2, 13)

	r(h, &a, b, c, d, in[3]+k3, 3)
	r(h, &d, a, b, c, in[7]+k3, 9)
	r(h, &c, d, a, b, in[2]+k3, 11)
	r(h, &b, c, d, a, in[6]+k3, 15)
	r(h, &a, b, c, d, in[1]+k3, 3)
	r(h, &d, a, b, c, in[5]+k3, 9)
	r(h, &c, d, a, b, in[0]+k3, 11)
	r(h, &b, c, d, a, in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}
