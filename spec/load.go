package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// Options are the inputs of Load besides the spec's files.
type Options struct {
	// Vars are name=value pairs from --var, in order; later ones win.
	Vars []string
	// VarFiles are HCL files of name = value, in order.
	VarFiles []string
	// Environ is the environment (os.Environ() when nil), read for
	// APPLIANCE_VAR_name and by env().
	Environ []string
	// Partial accepts variables without a value: the attributes that
	// depend on them are listed in Site.Pending instead of failing.
	// validate and plan set it; build does not.
	Partial bool
}

func (o Options) environ() []string {
	if o.Environ == nil {
		return os.Environ()
	}
	return o.Environ
}

func (o Options) getenv(name string) string {
	env := o.environ()
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "site", LabelNames: []string{"name"}},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "gateway", LabelNames: []string{"name"}},
		{Type: "os"},
		{Type: "mqtt"},
		{Type: "https"},
		{Type: "ota"},
		{Type: "influxdb"},
		{Type: "grafana"},
		{Type: "firewall"},
		{Type: "ssh"},
		{Type: "ingest"},
		{Type: "firmware", LabelNames: []string{"name"}},
		{Type: "node", LabelNames: []string{"name"}},
	},
}

// Files lists the HCL files of the spec at path: the file itself, or every
// *.hcl file in the folder, sorted.
func Files(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading spec: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	matches, err := filepath.Glob(filepath.Join(path, "*.hcl"))
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("reading spec: %s holds no .hcl files; name a spec file or a folder of them", path)
	}
	sort.Strings(matches)
	return matches, nil
}

// Load reads, decodes, defaults and checks the spec at path, a file or a
// folder of .hcl files. The site is nil when the report has errors.
func Load(path string, opts Options) (*Site, *Report) {
	files, err := Files(path)
	if err != nil {
		rep := &Report{parser: hclparse.NewParser()}
		rep.Diagnostics = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read the spec", Detail: err.Error()}}
		return nil, rep
	}
	dir := path
	if len(files) == 1 && files[0] == path {
		dir = filepath.Dir(path)
	}
	srcs := make([][]byte, len(files))
	for i, f := range files {
		if srcs[i], err = os.ReadFile(f); err != nil {
			rep := &Report{parser: hclparse.NewParser()}
			rep.Diagnostics = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read the spec", Detail: err.Error()}}
			return nil, rep
		}
	}
	site, rep := LoadSources(files, srcs, dir, opts)
	if site != nil {
		site.Location = locate(path, dir, dir == path, site.Name)
	}
	return site, rep
}

// LoadSources is Load for sources already in memory: files[i] names
// srcs[i], and relative paths in them start at dir.
func LoadSources(files []string, srcs [][]byte, dir string, opts Options) (*Site, *Report) {
	parser := hclparse.NewParser()
	rep := &Report{parser: parser}
	d := &decoder{unset: map[string]bool{}, localUnset: map[string][]string{}, getenv: opts.getenv, bad: map[string]bool{}}
	if len(files) == 0 {
		rep.add(hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read the spec", Detail: "The spec has no files."}})
		return nil, rep
	}
	var bodies []hcl.Body
	for i, f := range files {
		file, diags := parser.ParseHCL(srcs[i], f)
		d.add(diags...)
		if file != nil {
			bodies = append(bodies, file.Body)
		}
	}
	// A file that does not parse would make every block in it look
	// missing: report the syntax errors alone.
	if d.diags.HasErrors() {
		rep.add(d.diags)
		return nil, rep
	}
	var blocks hcl.Blocks
	for _, body := range bodies {
		content, diags := body.Content(rootSchema)
		d.add(diags...)
		blocks = append(blocks, content.Blocks...)
	}

	site := decodeSite(d, blocks, files, dir, opts, parser)
	rep.add(d.diags)
	if rep.HasErrors() {
		return nil, rep
	}
	return site, rep
}

// byType splits blocks by their type, keeping file order.
func byType(blocks hcl.Blocks) map[string]hcl.Blocks {
	m := map[string]hcl.Blocks{}
	for _, b := range blocks {
		m[b.Type] = append(m[b.Type], b)
	}
	return m
}

// single returns the one block of a type that may appear at most once,
// reporting every extra one.
func (d *decoder) single(blocks hcl.Blocks, what string) *hcl.Block {
	if len(blocks) == 0 {
		return nil
	}
	for _, extra := range blocks[1:] {
		d.errorAt(extra.DefRange, fmt.Sprintf("Duplicate %s block", what),
			fmt.Sprintf("A site has one %s block; the first is at %s. Merge them.", what, shortRange(blocks[0].DefRange)))
	}
	return blocks[0]
}

func decodeSite(d *decoder, blocks hcl.Blocks, files []string, dir string, opts Options, parser *hclparse.Parser) *Site {
	bt := byType(blocks)
	s := &Site{Dir: dir, Files: files}
	fileRange := hcl.Range{Filename: files[0], Start: hcl.InitialPos, End: hcl.InitialPos}
	s.Where.Block = fileRange

	decls := d.decodeVariables(bt["variable"])
	vars := d.assignVariables(decls, opts, parser)
	for _, v := range decls {
		s.Variables = append(s.Variables, v.Variable)
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":  vars,
			"path": cty.ObjectVal(map[string]cty.Value{"spec": cty.StringVal(dir)}),
		},
		Functions: functions(dir, opts.getenv),
	}
	ctx.Variables["local"] = d.decodeLocals(bt["locals"], ctx)

	s.SupportYears = DefaultSupportYears
	if blk := d.single(bt["site"], "site"); blk != nil {
		s.Where.Block = blk.DefRange
		s.Name = blk.Labels[0]
		if !validSiteName(s.Name) {
			d.errorAt(blk.LabelRanges[0], "Invalid site name",
				fmt.Sprintf("%q cannot name a site: it names the state and output folders, so use lowercase letters, digits and dashes (at most 63), starting with a letter or digit.", s.Name))
		}
		b, _ := d.open(blk.Body, siteSchema, ctx, &s.Where, "site")
		b.str("description", &s.Description)
		b.integer("support_years", &s.SupportYears, MinSupportYears, MaxSupportYears)
		d.decodeContact(b, s)
		b.str("vendor", &s.Vendor)
	} else {
		d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing site block", Detail: `Every spec names its site: add site "my-site" {} to one of its files.`, Subject: fileRange.Ptr(), Extra: noSnippet{}})
	}

	if blk := d.single(bt["gateway"], "gateway"); blk != nil {
		s.Gateway = d.decodeGateway(blk, ctx)
	} else {
		d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing gateway block", Detail: `A site has one gateway: add gateway "gw" { board = "rpi5" } with its hostname and admin.`, Subject: fileRange.Ptr(), Extra: noSnippet{}})
	}
	s.Gateway.Hardware = Boards[s.Gateway.Board]
	board, boardOK := Board{}, s.Gateway.Hardware != nil
	if boardOK {
		board = *s.Gateway.Hardware
	}

	d.decodeMQTT(s, d.single(bt["mqtt"], "mqtt"), ctx, fileRange)
	d.decodeHTTPS(s, d.single(bt["https"], "https"), ctx, fileRange)
	d.decodeOTA(s, d.single(bt["ota"], "ota"), ctx, fileRange)
	d.decodeInfluxDB(s, d.single(bt["influxdb"], "influxdb"), ctx, fileRange, board)
	d.decodeGrafana(s, d.single(bt["grafana"], "grafana"), ctx)
	d.decodeSSH(s, d.single(bt["ssh"], "ssh"), ctx, fileRange)
	d.decodeIngest(s, d.single(bt["ingest"], "ingest"), ctx, fileRange)
	d.decodeFirewall(s, d.single(bt["firewall"], "firewall"), ctx, fileRange)
	d.decodeOS(s, d.single(bt["os"], "os"), ctx, fileRange, board, boardOK)
	if boardOK {
		d.resolveBoard(s)
	}

	for _, blk := range bt["firmware"] {
		if fw, ok := d.decodeFirmware(blk, ctx, dir, opts); ok {
			s.Firmware = append(s.Firmware, fw)
		}
	}
	d.checkFirmwareNames(s, bt["firmware"])
	ctx.Variables["firmware"] = firmwareObject(s.Firmware)
	for _, blk := range bt["node"] {
		s.Nodes = append(s.Nodes, d.decodeNodes(s, blk, ctx)...)
	}

	d.check(s)
	s.Pending = dedupePending(d.pending)
	return s
}

func dedupePending(in []Pending) []Pending {
	seen := map[string]bool{}
	var out []Pending
	for _, p := range in {
		if seen[p.Attr] {
			continue
		}
		seen[p.Attr] = true
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Attr < out[j].Attr })
	return out
}
