package generation

import "time"

// Listing is what `appliance-apply list` prints (one JSON document),
// for appliance generations: the generations kept on the gateway.
type Listing struct {
	// Current is the generation the gateway runs (0: none yet).
	Current     int      `json:"current"`
	Generations []Listed `json:"generations"`
	// UnderWay is an apply that has neither committed nor rolled back:
	// the next run of appliance-apply rolls it back.
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

// UnderWay is the journal (apply.json) of an unfinished apply.
type UnderWay struct {
	// Kind is the command that started it: "switch" or "rollback".
	Kind    string    `json:"kind"`
	From    int       `json:"from"`
	To      int       `json:"to"`
	Phase   string    `json:"phase"`
	Started time.Time `json:"started"`
}
