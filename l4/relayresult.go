package l4

import "github.com/l4edge/l4edge/l4/closereason"

// relayResult is how a connection ended: the bytes moved each way, which
// side ended it, and the error behind an abnormal end. The relays report a
// relayloop.Result, converted by conn.FlowEnded; a stage that ends a
// connection makes one from its ending.
type relayResult struct {
	toBackend int64
	toClient  int64
	reason    closereason.Reason
	err       error
	// backendAcked is what relayloop.Result.BackendAcked says: the bytes
	// the backend acknowledged, known (>= 0) only when it ended the
	// connection before sending a byte.
	backendAcked int64
}
