package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/l4edge/l4edge/config"
)

// HashConfig is a hash of the effective configuration that leaves out
// what legitimately differs between members: listen addresses, admin and
// log settings (and the file's warnings). Members with different hashes
// drift.
func HashConfig(cfg *config.Config) string {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return ""
	}
	var c config.Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return ""
	}
	c.Admin, c.Log, c.Warnings = config.Admin{}, config.Log{}, nil
	for i := range c.Listeners {
		c.Listeners[i].Listen = ""
	}
	raw, _ = json.Marshal(&c)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}
