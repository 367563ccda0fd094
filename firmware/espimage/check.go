package espimage

import "fmt"

// MismatchError is a difference between what the spec says of a
// firmware and what its image's app descriptor says.
type MismatchError struct {
	Field      string // "version" or "secure_version"
	Spec, Desc string
	Fix        string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("the spec's %s is %s but the image's app descriptor says %s; %s", e.Field, e.Spec, e.Desc, e.Fix)
}

// Check reports whether the image is an app whose descriptor carries the
// spec's version and secure version: a node reports the descriptor's
// version and the bootloader enforces its secure version, so the spec
// must say the same or the OTA manifest would lie. The error is a
// *MismatchError naming the field that differs.
func (img *Image) Check(version string, secureVersion int) error {
	if img.App == nil {
		return fmt.Errorf("the image has no app descriptor (esp_app_desc_t) at the start of its first segment: it is not an ESP-IDF application (a bootloader?)")
	}
	if img.App.Version != version {
		return &MismatchError{Field: "version", Spec: fmt.Sprintf("%q", version), Desc: fmt.Sprintf("%q", img.App.Version),
			Fix: "set the firmware's version in the spec to the built one, or rebuild with that PROJECT_VER"}
	}
	if secureVersion < 0 || uint64(secureVersion) != uint64(img.App.SecureVersion) {
		return &MismatchError{Field: "secure_version", Spec: fmt.Sprint(secureVersion), Desc: fmt.Sprint(img.App.SecureVersion),
			Fix: "set the firmware's secure_version in the spec to the built one, or rebuild with that CONFIG_BOOTLOADER_APP_SECURE_VERSION"}
	}
	return nil
}
