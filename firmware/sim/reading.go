package sim

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"
)

// Reading is one message's payload, as docs/wire.md gives it; the
// fields are in its order.
type Reading struct {
	Boot        uint32  `json:"boot"`
	Seq         uint32  `json:"seq"`
	T           int64   `json:"t"`
	Temperature float64 `json:"temperature"`
	Humidity    float64 `json:"humidity"`
	RSSI        int     `json:"rssi"`
	FW          string  `json:"fw"`
}

// Payload is the reading's JSON.
func (r Reading) Payload() []byte {
	b, _ := json.Marshal(r)
	return b
}

// climate makes a node's plausible weather: a room whose temperature and
// humidity drift slowly around a value of the node's own, read with the
// sensor's resolution (a DHT11 reports whole percent, a DHT22 tenths).
type climate struct {
	rng       *rand.Rand
	sensor    string
	temp, hum float64
	baseT     float64
	baseH     float64
	rssi      float64
}

func newClimate(node, sensor string, boot uint32) *climate {
	h := fnv.New64a()
	h.Write([]byte(node))
	seed := h.Sum64()
	rng := rand.New(rand.NewPCG(seed, uint64(boot)))
	base := rand.New(rand.NewPCG(seed, 0))
	c := &climate{
		rng: rng, sensor: sensor,
		baseT: 18 + base.Float64()*6,  // 18 … 24 °C
		baseH: 40 + base.Float64()*20, // 40 … 60 %RH
		rssi:  -50 - base.Float64()*25,
	}
	c.temp, c.hum = c.baseT, c.baseH
	return c
}

// next is the next reading's values: a mean-reverting random walk.
func (c *climate) next() (temp, hum float64, rssi int) {
	c.temp += 0.05*(c.baseT-c.temp) + c.rng.NormFloat64()*0.1
	c.hum += 0.05*(c.baseH-c.hum) + c.rng.NormFloat64()*0.3
	c.temp = math.Max(0, math.Min(50, c.temp))
	c.hum = math.Max(5, math.Min(95, c.hum))
	temp = math.Round(c.temp*10) / 10
	hum = math.Round(c.hum*10) / 10
	if c.sensor == "dht11" {
		hum = math.Round(c.hum)
	}
	rssi = int(math.Round(c.rssi + c.rng.NormFloat64()*3))
	return temp, hum, max(-127, min(-1, rssi))
}

// reading takes reading seq at time now.
func (c *climate) reading(boot, seq uint32, fw string, now time.Time) Reading {
	t, h, rssi := c.next()
	return Reading{Boot: boot, Seq: seq, T: now.UnixMilli(), Temperature: t, Humidity: h, RSSI: rssi, FW: fw}
}
