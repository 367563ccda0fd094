package ingest

import (
	"net"
	"os"
	"strconv"
	"time"
)

// notifier speaks systemd's sd_notify protocol: one datagram per state
// to $NOTIFY_SOCKET. It is a few lines, so it is written here instead of
// adding go-systemd to the gateway's SBOM. Without NOTIFY_SOCKET (tests,
// a shell) it does nothing.
type notifier struct {
	conn *net.UnixConn
}

func newNotifier() *notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return &notifier{}
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return &notifier{}
	}
	return &notifier{conn: conn}
}

func (n *notifier) send(state string) {
	if n.conn != nil {
		n.conn.Write([]byte(state))
	}
}

// watchdog is how often systemd wants WATCHDOG=1 (half its WatchdogSec),
// or 0 when it does not.
func watchdog() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

func (n *notifier) close() {
	if n.conn != nil {
		n.conn.Close()
	}
}
