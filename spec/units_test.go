package spec

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"30s", 30 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{"90d", 90 * 24 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false},
		{"500ms", 500 * time.Millisecond, false},
		{"1.5h", 90 * time.Minute, false},
		{"5", 0, true},
		{"5y", 0, true},
		{"", 0, true},
		{"s", 0, true},
		{"99999999999999d", 0, true},
	} {
		got, err := ParseDuration(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for in, want := range map[time.Duration]string{
		90 * 24 * time.Hour: "90d", 30 * time.Second: "30s", 5 * time.Minute: "5m", 2 * time.Hour: "2h", 90 * time.Minute: "1h30m",
	} {
		if got := FormatDuration(in); got != want {
			t.Errorf("FormatDuration(%v) = %q; want %q", in, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"64MiB", 64 << 20, false},
		{"16KiB", 16 << 10, false},
		{"1GiB", 1 << 30, false},
		{"10MB", 10_000_000, false},
		{"2048", 2048, false},
		{"1.5KiB", 1536, false},
		{"lots", 0, true},
		{"-1", 0, true},
		{"1TiB", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if got := FormatSize(256 << 20); got != "256MiB" {
		t.Errorf("FormatSize = %q", got)
	}
}

func TestChipPins(t *testing.T) {
	for _, tc := range []struct {
		chip string
		pin  int
		ok   bool
	}{
		{"esp32", 4, true}, {"esp32", 6, false}, {"esp32", 35, false}, {"esp32", 40, false},
		{"esp32s3", 48, true}, {"esp32s3", 27, false}, {"esp32c3", 12, false}, {"esp32c3", 10, true},
	} {
		if got := Chips[tc.chip].PinProblem(tc.pin) == ""; got != tc.ok {
			t.Errorf("%s GPIO%d usable = %v; want %v", tc.chip, tc.pin, got, tc.ok)
		}
	}
}
