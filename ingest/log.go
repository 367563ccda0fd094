package ingest

import (
	"io"
	"log/slog"
	"os"
)

// ConfigPath is where the gateway keeps the service's configuration.
const ConfigPath = "/etc/appliance/ingest.json"

// Logger is the service's structured log: text lines on w (stderr, which
// systemd passes to the journal). Under systemd the journal stamps each
// line, so the time is left out.
func Logger(w io.Writer, debug bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if debug {
		opts.Level = slog.LevelDebug
	}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
