package spec

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a duration as Go writes them ("90s", "1h30m") and
// also with days and weeks ("90d", "2w"), which retention periods need.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q is not a duration; write a number and a unit, such as 30s, 5m, 2h, 90d", s)
		}
		num := rest[:i]
		rest = rest[i:]
		j := 0
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		unit := rest[:j]
		rest = rest[j:]
		var mult time.Duration
		switch unit {
		case "ms":
			mult = time.Millisecond
		case "s":
			mult = time.Second
		case "m":
			mult = time.Minute
		case "h":
			mult = time.Hour
		case "d":
			mult = 24 * time.Hour
		case "w":
			mult = 7 * 24 * time.Hour
		case "":
			return 0, fmt.Errorf("%q has no unit; write it as %ss (or ms, m, h, d, w)", s, num)
		default:
			return 0, fmt.Errorf("%q has unknown unit %q; use ms, s, m, h, d or w", s, unit)
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		d := f * float64(mult)
		if d > float64(1<<62) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		total += time.Duration(d)
		if total < 0 || total > 1<<62 {
			return 0, fmt.Errorf("%q is too long", s)
		}
	}
	return total, nil
}

// FormatDuration writes a duration the way a spec would: whole days as
// "90d", otherwise Go's form.
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	// Go writes 30s as "30s" but 5m as "5m0s"; trim the zero tails.
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"kB", 1000}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize reads a size in bytes: a plain number, or a number with one
// of the units KiB, MiB, GiB (powers of two) or kB, MB, GB (powers of ten).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("%q is not a size; write a number and a unit, such as 64MiB", s)
			}
			if v*float64(u.mult) > 1<<50 {
				return 0, fmt.Errorf("%q is too large", s)
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size; write a number of bytes, or a number and a unit such as 64MiB", s)
	}
	return v, nil
}

// FormatSize writes a size with the largest binary unit that divides it.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}
