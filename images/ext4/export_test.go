package ext4

// For the tests in package ext4_test, which read host trees with
// images/internal/dirtree (which imports this package).
var (
	Fsck         = fsck
	CheckDebugfs = checkDebugfs
	CheckMounted = checkMounted
	WriteImage   = writeImage
	TestOptions  = opts
)
