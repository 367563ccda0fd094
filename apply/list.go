package apply

import (
	"encoding/json"
	"io"
	"time"
)

// Listing is what appliance-apply list prints, for appliance
// generations.
type Listing struct {
	// Current is the generation the gateway runs (0: none).
	Current     int      `json:"current"`
	Generations []Listed `json:"generations"`
	// UnderWay is an apply that has neither committed nor rolled back
	// (the next appliance-apply run rolls it back).
	UnderWay *UnderWay `json:"under_way,omitempty"`
}

// Listed is one kept generation.
type Listed struct {
	Generation int       `json:"generation"`
	Created    time.Time `json:"created"`
	Appliance  string    `json:"appliance"`
	Changes    []string  `json:"changes,omitempty"`
	Current    bool      `json:"current,omitempty"`
}

// UnderWay is the journal of an unfinished apply.
type UnderWay struct {
	Kind    string    `json:"kind"`
	From    int       `json:"from"`
	To      int       `json:"to"`
	Phase   string    `json:"phase"`
	Started time.Time `json:"started"`
}

func (a *applier) list(w io.Writer) error {
	n, _, err := a.current()
	if err != nil {
		return err
	}
	gens, err := a.generations()
	if err != nil {
		return err
	}
	l := Listing{Current: n, Generations: []Listed{}}
	for _, g := range gens {
		m, err := a.manifest(g)
		if err != nil {
			return err
		}
		l.Generations = append(l.Generations, Listed{Generation: g, Created: m.Created, Appliance: m.Appliance, Changes: m.Changes, Current: g == n})
	}
	j, err := a.readJournal()
	if err != nil {
		return err
	}
	if j != nil {
		l.UnderWay = &UnderWay{Kind: j.Kind, From: j.From, To: j.To, Phase: j.Phase, Started: j.Started}
	}
	b, err := json.MarshalIndent(l, "", " ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
