// Package spec reads a site specification: one HCL file, or a folder of
// them, that describes a whole sensor site. It decodes the HCL into plain Go
// structs that keep the source range of every block and attribute, applies
// the secure defaults for everything the user leaves out, and checks the
// result so that every problem is reported in one run as an hcl.Diagnostic.
//
// spec imports nothing else of this project: the modules, the PKI and the
// image builder read a *Site, never the HCL.
package spec
