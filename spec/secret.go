package spec

// Secret holds a value that must never be shown: Wi-Fi passphrases and
// anything derived from a variable declared sensitive. It prints and
// marshals as "(sensitive)" so that a plan, a log line or a JSON dump
// cannot leak it by accident; Reveal is the one way to read it.
type Secret struct {
	value string
	set   bool
}

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{value: v, set: true} }

// Reveal returns the secret value, for the few places that must write it
// into the device's configuration.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether a value was given.
func (s Secret) IsSet() bool { return s.set }

func (s Secret) String() string {
	if !s.set {
		return "(not set)"
	}
	return "(sensitive)"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps encoding/json and friends from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
