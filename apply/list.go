package apply

import (
	"encoding/json"
	"io"

	"github.com/appliance/appliance/generation"
)

// list prints the kept generations as a generation.Listing.
func (a *applier) list(w io.Writer) error {
	n, _, err := a.current()
	if err != nil {
		return err
	}
	gens, err := a.generations()
	if err != nil {
		return err
	}
	l := generation.Listing{Current: n, Generations: []generation.Listed{}}
	for _, g := range gens {
		m, err := a.manifest(g)
		if err != nil {
			return err
		}
		l.Generations = append(l.Generations, generation.Listed{Generation: g, Created: m.Created, Appliance: m.Appliance, Changes: m.Changes, Current: g == n})
	}
	j, err := a.readJournal()
	if err != nil {
		return err
	}
	if j != nil {
		l.UnderWay = &generation.UnderWay{Kind: j.Kind, From: j.From, To: j.To, Phase: j.Phase, Started: j.Started}
	}
	b, err := json.MarshalIndent(l, "", " ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
