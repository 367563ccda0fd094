package sim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/eclipse/paho.golang/paho"
)

// connackError is a CONNACK with an error code: the broker refused the
// node.
type connackError struct {
	code  byte
	props *paho.ConnackProperties
}

func (e *connackError) Error() string {
	s := ""
	if e.props != nil {
		s = e.props.ReasonString
	}
	return "the broker refused the connection: " + reasonText(e.code, s)
}

// pubackError is a PUBACK with an error code: the broker refused a
// reading (a topic the ACL does not give the node, say).
type pubackError struct {
	code  byte
	props *paho.PublishResponseProperties
}

func (e *pubackError) Error() string {
	s := ""
	if e.props != nil {
		s = e.props.ReasonString
	}
	return "the broker refused a reading: " + reasonText(e.code, s)
}

// disconnectError is a DISCONNECT the broker sent.
type disconnectError struct {
	code  byte
	props *paho.DisconnectProperties
}

func (e *disconnectError) Error() string {
	s := ""
	if e.props != nil {
		s = e.props.ReasonString
	}
	return "the broker disconnected the node: " + reasonText(e.code, s)
}

// classify says whether err is the gateway refusing the node (and
// whether it refused the connection rather than a reading), and why, in
// words for the summary; server names the side the node talked to.
func classify(err error, server string) (refused, conn bool, reason string) {
	var ce *connackError
	var pe *pubackError
	var op *net.OpError
	var ve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ce):
		return true, true, ce.Error()
	case errors.As(err, &pe):
		return true, false, pe.Error()
	case errors.As(err, &op) && op.Op == "remote error":
		// The server sent a TLS alert: it does not take the node's
		// certificate (revoked, expired, another CA's).
		return true, true, "the " + server + " refused the TLS handshake: " + op.Err.Error()
	case errors.As(err, &ve):
		name := "the name in config.json"
		if len(ve.UnverifiedCertificates) > 0 {
			name = ve.UnverifiedCertificates[0].Subject.CommonName
		}
		return false, false, fmt.Sprintf("the %s's certificate (%s) does not verify: %v", server, name, ve.Err)
	case errors.Is(err, io.EOF) && !errors.Is(err, errLost):
		return false, false, "the " + server + " closed the connection before accepting it"
	}
	return false, false, err.Error()
}

// reasonText names an MQTT v5 reason code (MQTT 5.0 §2.4).
func reasonText(code byte, s string) string {
	name, ok := reasonNames[code]
	if !ok {
		name = "reason"
	}
	out := fmt.Sprintf("%s (0x%02X)", name, code)
	if s != "" {
		out += ": " + s
	}
	return out
}

var reasonNames = map[byte]string{
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x84: "unsupported protocol version",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8A: "banned",
	0x8B: "server shutting down",
	0x8C: "bad authentication method",
	0x8D: "keep alive timeout",
	0x8E: "session taken over",
	0x8F: "topic filter invalid",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x93: "receive maximum exceeded",
	0x94: "topic alias invalid",
	0x95: "packet too large",
	0x96: "message rate too high",
	0x97: "quota exceeded",
	0x98: "administrative action",
	0x99: "payload format invalid",
	0x9A: "retain not supported",
	0x9B: "QoS not supported",
	0x9C: "use another server",
	0x9D: "server moved",
	0x9F: "connection rate exceeded",
}
