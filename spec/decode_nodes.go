package spec

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Node defaults and bounds.
const (
	DefaultInterval = time.Minute
	MaxInterval     = 24 * time.Hour
	MaxNodeCount    = 10000
	// maxVersionLen is what the ESP-IDF app descriptor holds: 32 bytes
	// with the terminating NUL.
	maxVersionLen = 31
)

var firmwareSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "chip", Required: true}, {Name: "version", Required: true}, {Name: "image"}, {Name: "secure_version"}, {Name: "flash_size"},
	},
}

func (d *decoder) decodeFirmware(blk *hcl.Block, ctx *hcl.EvalContext, dir string, opts Options) (Firmware, bool) {
	fw := Firmware{Name: blk.Labels[0], FlashSize: DefaultFlashSize, Where: Where{Block: blk.DefRange}}
	if !fwNameRe.MatchString(fw.Name) {
		d.errorAt(blk.LabelRanges[0], "Invalid firmware name", fmt.Sprintf("%q cannot name a firmware: use lowercase letters, digits, '_' and '-' (at most 31), starting with a letter.", fw.Name))
		return fw, false
	}
	b, _ := d.open(blk.Body, firmwareSchema, ctx, &fw.Where, "firmware."+fw.Name)
	if b.str("chip", &fw.Chip) {
		if _, ok := Chips[fw.Chip]; !ok {
			b.fail("chip", "Unknown chip", fmt.Sprintf("%q is not a chip appliance builds for; use one of %s.", fw.Chip, strings.Join(keys(Chips), ", ")))
		}
	}
	if b.str("version", &fw.Version) {
		if !versionRe.MatchString(fw.Version) || len(fw.Version) > maxVersionLen {
			b.fail("version", "Invalid firmware version", fmt.Sprintf("%q is not a semantic version of at most %d characters, such as \"1.4.0\"; the version is stored in the app image and compared by the nodes.", fw.Version, maxVersionLen))
		}
	}
	if b.str("image", &fw.Image) {
		p, err := resolvePath(dir, fw.Image, opts.getenv)
		if err == nil {
			var fi os.FileInfo
			if fi, err = os.Stat(p); err == nil && !fi.Mode().IsRegular() {
				err = fmt.Errorf("not a file")
			}
		}
		if err != nil {
			b.fail("image", "Firmware image not found", fmt.Sprintf("No file at %s; build the sensor firmware first (idf.py build), or correct the path.", p))
		} else {
			fw.Image = p
		}
	}
	var flash string
	if b.str("flash_size", &flash) {
		// Flash sizes are powers of two that data sheets and esptool
		// write as "4MB": mebibytes, whatever the unit says.
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(flash), "MB"), "MIB"))
		if err != nil || !slices.Contains(FlashSizes, int64(n)<<20) {
			b.fail("flash_size", "Unsupported flash size", fmt.Sprintf("%q is not a flash size of the ESP32 modules appliance lays out; use \"2MB\", \"4MB\", \"8MB\", \"16MB\" or \"32MB\", as the module's data sheet says.", flash))
		} else {
			fw.FlashSize = int64(n) << 20
		}
	}
	if chip, ok := Chips[fw.Chip]; ok {
		max := 1<<chip.SecureVersionBits - 1
		if chip.SecureVersionBits >= 32 {
			max = 1<<31 - 1
		}
		if b.has("secure_version") {
			var sv int
			if b.integer("secure_version", &sv, 0, max) {
				fw.SecureVersion = sv
			}
			// The eFuse field is a thermometer code: each version burns
			// one more bit, so the counter holds as many versions as bits.
			if sv > chip.SecureVersionBits {
				b.fail("secure_version", "secure_version out of range", fmt.Sprintf("The %s's anti-rollback eFuse field has %d bits, so secure_version can go from 0 to %d.", chip.Name, chip.SecureVersionBits, chip.SecureVersionBits))
			}
		}
	} else {
		b.integer("secure_version", &fw.SecureVersion, 0, 1<<31-1)
	}
	return fw, true
}

func (d *decoder) checkFirmwareNames(s *Site, blocks hcl.Blocks) {
	seen := map[string]hcl.Range{}
	for _, blk := range blocks {
		n := blk.Labels[0]
		if prev, dup := seen[n]; dup {
			d.errorAt(blk.LabelRanges[0], "Duplicate firmware", fmt.Sprintf("A firmware named %q is already declared at %s.", n, shortRange(prev)))
		}
		seen[n] = blk.DefRange
	}
}

// firmwareObject lets node blocks refer to firmware.NAME and read its
// name, chip and version.
func firmwareObject(fws []Firmware) cty.Value {
	m := map[string]cty.Value{}
	for _, fw := range fws {
		m[fw.Name] = cty.ObjectVal(map[string]cty.Value{
			"name":    cty.StringVal(fw.Name),
			"chip":    cty.StringVal(fw.Chip),
			"version": cty.StringVal(fw.Version),
		})
	}
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(m)
}

var nodeSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "count"}, {Name: "firmware"}, {Name: "sensor", Required: true}, {Name: "interval"},
		{Name: "wifi", Required: true}, {Name: "tags"},
	},
}

// reservedTags are tag keys the ingest service writes itself.
var reservedTags = map[string]bool{"node": true, "group": true, "firmware": true, "sensor": true}

// decodeNodes expands one node block: count = N gives N nodes named
// label-1 … label-N, each decoded with node.name and node.index set, so
// that settings may differ per node. Messages name the block (node.LABEL)
// so that a mistake shared by every node is reported once.
func (d *decoder) decodeNodes(s *Site, blk *hcl.Block, ctx *hcl.EvalContext) []Node {
	label := blk.Labels[0]
	if !validCertName(label) {
		d.errorAt(blk.LabelRanges[0], "Invalid node name", fmt.Sprintf("%q cannot name a node: its name is its certificate's CN and part of its MQTT topics, so use lowercase letters, digits and dashes (at most 63).", label))
		return nil
	}
	path := "node." + label
	// count is read first, without node.* (which it cannot depend on).
	var where Where
	where.Block = blk.DefRange
	cb, _ := d.open(blk.Body, nodeSchema, ctx, &where, path)
	count, counted := 0, false
	if cb.has("count") {
		if a := cb.attrs["count"]; len(d.unsetVars(a.Expr)) > 0 {
			cb.fail("count", "count depends on an unset variable", fmt.Sprintf("The number of nodes must be known to read the spec; set %s.", strings.Join(d.unsetVars(a.Expr), ", ")))
			return nil
		}
		if !cb.integer("count", &count, 0, MaxNodeCount) {
			return nil
		}
		counted = true
	}
	// The first pass only counts: drop what it said about other
	// attributes, the per-node passes below say it again.
	names := []string{label}
	if counted {
		names = names[:0]
		for i := 1; i <= count; i++ {
			names = append(names, label+"-"+strconv.Itoa(i))
		}
		if len(label)+1+len(strconv.Itoa(count)) > 63 {
			d.errorAt(blk.LabelRanges[0], "Node name too long", fmt.Sprintf("%s-%d is longer than 63 characters; use a shorter label.", label, count))
			return nil
		}
	}
	if reservedCertNames[label] && !counted {
		d.errorAt(blk.LabelRanges[0], "Reserved node name", fmt.Sprintf("%q names one of the gateway's own certificates; choose another name.", label))
		return nil
	}
	var out []Node
	for i, name := range names {
		index := 0
		if counted {
			index = i + 1
		}
		nctx := ctx.NewChild()
		nctx.Variables = map[string]cty.Value{"node": cty.ObjectVal(map[string]cty.Value{
			"name": cty.StringVal(name), "index": cty.NumberIntVal(int64(index)), "group": cty.StringVal(label),
		})}
		n := Node{Name: name, Group: label, Index: index, Interval: DefaultInterval, Where: Where{Block: blk.DefRange}}
		d.decodeNode(s, blk, nctx, &n, path)
		out = append(out, n)
	}
	return out
}

func (d *decoder) decodeNode(s *Site, blk *hcl.Block, ctx *hcl.EvalContext, n *Node, path string) {
	b, _ := d.open(blk.Body, nodeSchema, ctx, &n.Where, path)
	if b.has("count") {
		n.Where.set("count", b.attrs["count"].Expr.Range())
	}

	d.nodeFirmware(s, b, n, path)

	if f, _ := b.object("sensor", []string{"type", "pin"}, []string{"type", "pin"}); f != nil {
		if b.fieldString("sensor", "type", f, &n.Sensor.Type) {
			if _, known := Sensors[n.Sensor.Type]; !known {
				d.errorAt(b.fieldRange("sensor", "type"), "Unknown sensor type", fmt.Sprintf("%q is not a sensor appliance's firmware reads; use one of %s.", n.Sensor.Type, strings.Join(keys(Sensors), ", ")))
			}
		}
		if b.fieldInt("sensor", "pin", f, &n.Sensor.Pin) {
			if fw := s.FirmwareByName(n.Firmware); fw != nil {
				if chip, ok := Chips[fw.Chip]; ok {
					if problem := chip.PinProblem(n.Sensor.Pin); problem != "" {
						d.errorAt(b.fieldRange("sensor", "pin"), "Unusable sensor pin", fmt.Sprintf("%s.sensor.pin: %s; choose another GPIO.", path, problem))
					}
				}
			}
		}
	}

	if b.duration("interval", &n.Interval, time.Second, MaxInterval, false) {
		if sensor, ok := Sensors[n.Sensor.Type]; ok && n.Interval < sensor.MinInterval {
			b.fail("interval", "Interval too short for the sensor", fmt.Sprintf("The %s can be read at most every %s; set interval to %s or more.", sensor.Name, FormatDuration(sensor.MinInterval), FormatDuration(sensor.MinInterval)))
		}
	}

	if f, _ := b.object("wifi", []string{"ssid", "psk"}, []string{"ssid", "psk"}, "psk"); f != nil {
		n.WiFi.Where.Block = b.rng("wifi")
		if b.fieldString("wifi", "ssid", f, &n.WiFi.SSID) && (len(n.WiFi.SSID) == 0 || len(n.WiFi.SSID) > 32) {
			d.errorAt(b.fieldRange("wifi", "ssid"), "Invalid Wi-Fi SSID", "An SSID is 1 to 32 bytes long.")
		}
		var psk string
		if b.fieldString("wifi", "psk", f, &psk) {
			n.WiFi.PSK = NewSecret(psk)
			if !validPSK(psk) {
				d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid Wi-Fi passphrase",
					Detail:  fmt.Sprintf("%s.wifi.psk: a WPA passphrase is 8 to 63 printable ASCII characters, or 64 hex digits.", path),
					Subject: b.fieldRange("wifi", "psk").Ptr(), Extra: noSnippet{}})
			}
		}
	}

	if v, ok := b.eval("tags", cty.Map(cty.String), false); ok {
		n.Tags = map[string]string{}
		ks := []string{}
		for k := range v.AsValueMap() {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			val := v.Index(cty.StringVal(k))
			switch {
			case !tagKeyRe.MatchString(k):
				d.errorAt(b.fieldRange("tags", k), "Invalid tag", fmt.Sprintf("%q cannot be a tag key: use letters, digits and '_' (at most 32), starting with a letter or '_'.", k))
			case reservedTags[k]:
				d.errorAt(b.fieldRange("tags", k), "Reserved tag", fmt.Sprintf("The ingest service writes the tag %q itself; choose another key.", k))
			case val.IsNull():
			case len(val.AsString()) > 128 || strings.ContainsFunc(val.AsString(), func(r rune) bool { return r < 0x20 || r == 0x7f }):
				d.errorAt(b.fieldRange("tags", k), "Invalid tag value", fmt.Sprintf("tags.%s must be at most 128 characters without control characters.", k))
			default:
				n.Tags[k] = val.AsString()
			}
		}
	}
}

// nodeFirmware reads firmware = firmware.NAME, which may be left out when
// the spec declares one firmware.
func (d *decoder) nodeFirmware(s *Site, b *body, n *Node, path string) {
	if a, ok := b.attrs["firmware"]; ok {
		if t, diags := hcl.AbsTraversalForExpr(a.Expr); !diags.HasErrors() && len(t) == 2 && t.RootName() == "firmware" {
			if name, ok := t[1].(hcl.TraverseAttr); ok && s.FirmwareByName(name.Name) == nil {
				n.Where.set("firmware", a.Expr.Range())
				b.fail("firmware", "Unknown firmware", fmt.Sprintf("No firmware block is named %q; declare firmware %q { … }, or correct the name.", name.Name, name.Name))
				return
			}
		}
	}
	if v, ok := b.eval("firmware", cty.DynamicPseudoType, false); ok {
		switch {
		case v.Type() == cty.String:
			n.Firmware = v.AsString()
		case v.Type().IsObjectType() && v.Type().HasAttribute("name"):
			n.Firmware = v.GetAttr("name").AsString()
		default:
			b.fail("firmware", "Invalid firmware reference", "Refer to a firmware block, such as firmware = firmware.sensor.")
		}
		if n.Firmware != "" && s.FirmwareByName(n.Firmware) == nil {
			b.fail("firmware", "Unknown firmware", fmt.Sprintf("No firmware block is named %q; declare firmware %q { … } or correct the name.", n.Firmware, n.Firmware))
			n.Firmware = ""
		}
	} else if !b.has("firmware") {
		switch len(s.Firmware) {
		case 1:
			n.Firmware = s.Firmware[0].Name
		case 0:
			d.errorAt(n.Where.Block, "No firmware for node", fmt.Sprintf("%s needs firmware to run: declare a firmware block, such as firmware \"sensor\" { chip = \"esp32s3\"  version = \"1.0.0\" }.", path))
		default:
			d.errorAt(n.Where.Block, "Which firmware?", fmt.Sprintf("The spec declares %d firmware blocks; say which one %s runs, such as firmware = firmware.%s.", len(s.Firmware), path, s.Firmware[0].Name))
		}
	}

}
