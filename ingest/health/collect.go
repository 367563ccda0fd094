package health

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sample is one series of the Prometheus text format: its name, its
// labels and its value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ParseMetrics reads the Prometheus text format as ingest writes it
// (no timestamps; label values quoted with Go's escapes).
func ParseMetrics(r io.Reader) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("metrics line %q has no value", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s := Sample{Name: line[:sp], Value: v, Labels: map[string]string{}}
		if i := strings.IndexByte(s.Name, '{'); i >= 0 && strings.HasSuffix(s.Name, "}") {
			labels := s.Name[i+1 : len(s.Name)-1]
			s.Name = s.Name[:i]
			for labels != "" {
				eq := strings.IndexByte(labels, '=')
				if eq < 0 {
					return nil, fmt.Errorf("metrics line %q: bad labels", line)
				}
				key := labels[:eq]
				val, rest, err := unquote(labels[eq+1:])
				if err != nil {
					return nil, fmt.Errorf("metrics line %q: %w", line, err)
				}
				s.Labels[key] = val
				labels = strings.TrimPrefix(rest, ",")
			}
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// unquote reads a quoted label value off the front of s.
func unquote(s string) (string, string, error) {
	if s == "" || s[0] != '"' {
		return "", "", fmt.Errorf("label value is not quoted")
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			return v, s[i+1:], err
		}
	}
	return "", "", fmt.Errorf("label value is not closed")
}

// IngestView is what ingest's metrics say.
type IngestView struct {
	Up            bool
	MQTTConnected bool
	InfluxDBUp    bool
	SpoolBytes    int64
	SpoolPending  int64
	SpoolFull     bool
	// WriteFailures are failed write requests since ingest started.
	WriteFailures int64
	Nodes         map[string]NodeView
}

// NodeView is what ingest last heard of a node.
type NodeView struct {
	Readings int64
	LastSeen time.Time // zero when nothing came since ingest started
	Firmware string
}

func scrapeIngest(ctx context.Context, client *http.Client, url string) (IngestView, error) {
	v := IngestView{Nodes: map[string]NodeView{}}
	if url == "" {
		return v, fmt.Errorf("no ingest metrics URL is configured")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return v, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return v, fmt.Errorf("reading ingest's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("reading ingest's metrics: %s", resp.Status)
	}
	samples, err := ParseMetrics(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return v, err
	}
	v.Up = true
	for _, s := range samples {
		node := s.Labels["node"]
		n := v.Nodes[node]
		switch s.Name {
		case "ingest_mqtt_connected":
			v.MQTTConnected = s.Value == 1
		case "ingest_influxdb_up":
			v.InfluxDBUp = s.Value == 1
		case "ingest_spool_bytes":
			v.SpoolBytes = int64(s.Value)
		case "ingest_spool_pending":
			v.SpoolPending = int64(s.Value)
		case "ingest_spool_full":
			v.SpoolFull = s.Value == 1
		case "ingest_write_failures_total":
			v.WriteFailures += int64(s.Value)
		case "ingest_node_readings_total":
			n.Readings = int64(s.Value)
		case "ingest_node_last_seen_seconds":
			if s.Value > 0 {
				n.LastSeen = time.Unix(0, int64(s.Value*1e9)).UTC()
			}
		case "ingest_node_firmware_info":
			n.Firmware = s.Labels["version"]
		default:
			continue
		}
		if node != "" {
			v.Nodes[node] = n
		}
	}
	return v, nil
}

// certNotAfter reads the first certificate of a PEM file.
func certNotAfter(file string) (time.Time, error) {
	p, err := expand(file)
	if err != nil {
		return time.Time{}, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return time.Time{}, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return time.Time{}, fmt.Errorf("%s holds no PEM certificate", p)
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return time.Time{}, fmt.Errorf("%s: %w", p, err)
			}
			return c.NotAfter.UTC(), nil
		}
	}
}

// DiskView is the use of the data partition.
type DiskView struct {
	Path        string
	SizeBytes   int64
	UsedBytes   int64
	UsedPercent float64
}

// diskUse is the use of the file system at path, as df counts it: used
// against what is available to unprivileged users plus used.
func diskUse(path string) (DiskView, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return DiskView{Path: path}, fmt.Errorf("disk use of %s: %w", path, err)
	}
	bs := int64(st.Bsize)
	used := (int64(st.Blocks) - int64(st.Bfree)) * bs
	avail := int64(st.Bavail) * bs
	d := DiskView{Path: path, SizeBytes: int64(st.Blocks) * bs, UsedBytes: used}
	if used+avail > 0 {
		d.UsedPercent = float64(used) * 100 / float64(used+avail)
	}
	return d, nil
}
