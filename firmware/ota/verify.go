package ota

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"time"
)

// The reasons a device refuses a manifest; Verify's errors wrap one.
var (
	ErrTooLarge  = errors.New("the manifest is larger than 4096 bytes")
	ErrSignature = errors.New("the manifest's signature does not verify with any trusted OTA key")
	ErrMalformed = errors.New("the manifest is malformed")
	ErrFirmware  = errors.New("the manifest is for another firmware")
	ErrChip      = errors.New("the manifest is for another chip")
	ErrNoClock   = errors.New("the device's clock is not set, so the manifest's expiry cannot be checked")
	ErrExpired   = errors.New("the manifest has expired")
	ErrReplay    = errors.New("the manifest is not newer than the last one accepted")
	ErrDowngrade = errors.New("the manifest's secure version is lower than the running firmware's")
	ErrUnchanged = errors.New("the manifest names the version already running")
)

// Device is what a node knows when it checks a manifest: its firmware
// and chip, from its config.json; the running app's version and secure
// version, from its app descriptor; and the highest manifest version it
// has accepted, kept in NVS (0 before the first).
type Device struct {
	Firmware        string
	Chip            string
	Version         string
	SecureVersion   uint32
	ManifestVersion uint64
}

// ClockFloor is the earliest time a device's clock may read and count
// as set: an ESP32 that has not synchronised starts in 1970.
var ClockFloor = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Verify applies the device's rules, in the order docs/ota.md gives:
// the size, the signature (before anything is parsed), the form, then
// firmware, chip, clock, expiry, manifest version, secure version and
// version. It returns the manifest to install.
func Verify(manifest, sig []byte, keys []*ecdsa.PublicKey, dev Device, now time.Time) (*Manifest, error) {
	if len(manifest) > MaxManifestSize {
		return nil, ErrTooLarge
	}
	if err := VerifySignature(manifest, sig, keys); err != nil {
		return nil, err
	}
	m, err := Parse(manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case m.Firmware != dev.Firmware:
		return nil, fmt.Errorf("%w: %q, this node runs %q", ErrFirmware, m.Firmware, dev.Firmware)
	case m.Chip != dev.Chip:
		return nil, fmt.Errorf("%w: %s, this node is %s", ErrChip, m.Chip, dev.Chip)
	case now.Before(ClockFloor):
		return nil, ErrNoClock
	case now.Unix() >= m.Expires:
		return nil, fmt.Errorf("%w on %s", ErrExpired, m.ExpiresAt().Format(time.RFC3339))
	case m.ManifestVersion <= dev.ManifestVersion:
		return nil, fmt.Errorf("%w: version %d, last accepted %d", ErrReplay, m.ManifestVersion, dev.ManifestVersion)
	case m.SecureVersion < dev.SecureVersion:
		return nil, fmt.Errorf("%w: %d < %d", ErrDowngrade, m.SecureVersion, dev.SecureVersion)
	case m.Version == dev.Version:
		return nil, fmt.Errorf("%w: %s", ErrUnchanged, m.Version)
	}
	return m, nil
}
