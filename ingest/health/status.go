package health

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StatusFile is the last snapshot's name in the state folder.
const StatusFile = "status.json"

// Status is a snapshot of the site's health: what `appliance-health
// status` prints and `appliance status` shows.
type Status struct {
	Site  string    `json:"site"`
	Time  time.Time `json:"time"`
	Since time.Time `json:"since"`
	// LastWrite is when InfluxDB last took the health points;
	// LastWriteError why the latest write failed.
	LastWrite      time.Time      `json:"last_write,omitzero"`
	LastWriteError string         `json:"last_write_error,omitempty"`
	Nodes          []NodeStatus   `json:"nodes"`
	Certificates   []CertStatus   `json:"certificates"`
	Refused        []RefusedCount `json:"refused"`
	Ingest         IngestStatus   `json:"ingest"`
	Disk           *DiskView      `json:"disk,omitempty"`
}

// NodeStatus is one node's health.
type NodeStatus struct {
	Name  string `json:"name"`
	Group string `json:"group,omitempty"`
	// Interval is the node's reading interval in seconds.
	Interval float64 `json:"interval_s"`
	// LastSeen is its last good reading; zero when none came since the
	// gateway's services started.
	LastSeen          time.Time `json:"last_seen,omitzero"`
	SilentSeconds     float64   `json:"silent_s"`
	SilentIntervals   float64   `json:"silent_intervals"`
	ReadingsPerMinute *float64  `json:"readings_per_min,omitempty"`
	Firmware          string    `json:"firmware_version,omitempty"`
	CertNotAfter      time.Time `json:"cert_not_after,omitzero"`
	CertDaysLeft      float64   `json:"cert_days_left,omitempty"`
	// Refused counts the refusals that named this node since Since.
	Refused int        `json:"refused"`
	OTA     *OTAStatus `json:"ota,omitempty"`
}

// OTAStatus is a node's last update.
type OTAStatus struct {
	Firmware string    `json:"firmware"`
	Version  string    `json:"version"`
	Outcome  string    `json:"outcome"`
	Time     time.Time `json:"time"`
}

// CertStatus is one certificate's expiry.
type CertStatus struct {
	Name     string    `json:"name"`
	Kind     string    `json:"kind"`
	NotAfter time.Time `json:"not_after,omitzero"`
	DaysLeft float64   `json:"days_left"`
	Error    string    `json:"error,omitempty"`
}

// RefusedCount counts the clients refused for one reason since Since.
type RefusedCount struct {
	Service string `json:"service"`
	Reason  string `json:"reason"`
	Count   int    `json:"count"`
}

// IngestStatus is the ingest service's state.
type IngestStatus struct {
	Up            bool  `json:"up"`
	MQTTConnected bool  `json:"mqtt_connected"`
	InfluxDBUp    bool  `json:"influxdb_up"`
	SpoolBytes    int64 `json:"spool_bytes"`
	SpoolPending  int64 `json:"spool_pending"`
	SpoolFull     bool  `json:"spool_full"`
	WriteFailures int64 `json:"write_failures"`
}

// ReadStatus reads the last snapshot the program saved in dir.
func ReadStatus(dir string) (*Status, error) {
	b, err := os.ReadFile(filepath.Join(dir, StatusFile))
	if err != nil {
		return nil, fmt.Errorf("no health snapshot yet (%w): is appliance-health running? systemctl status appliance-health", err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", StatusFile, err)
	}
	return &s, nil
}
