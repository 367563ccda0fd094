package modules

import (
	"bytes"
	"embed"
	"fmt"
	"strings"
	"text/template"
)

//go:embed templates/*
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"join":  strings.Join,
	"quote": func(s string) string { return fmt.Sprintf("%q", s) },
}).ParseFS(templateFS, "templates/*"))

// render fills a template of templates/ with data. The templates are
// fixed and checked by tests, so a failure is a bug, not a user error.
func render(name string, data any) string {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		panic(fmt.Sprintf("modules: template %s: %v", name, err))
	}
	return b.String()
}
