package proxy

// Event is one significant event of the proxy, for the node's /events
// (type "proxy"): never one per ordinary request, only its start and the
// requests it could not serve as asked.
type Event struct {
	// Event is started, wait-timeout (504), forward-failed (503),
	// retried-read, auth-refused (401) or app-unreachable (502).
	Event  string `json:"event"`
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Event names.
const (
	EventStarted        = "started"
	EventWaitTimeout    = "wait-timeout"
	EventForwardFailed  = "forward-failed"
	EventRetriedRead    = "retried-read"
	EventAuthRefused    = "auth-refused"
	EventAppUnreachable = "app-unreachable"
)

// emit reports e to Config.OnEvent, if set.
func (s *Server) emit(event, method, path, detail string) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(Event{Event: event, Method: method, Path: path, Detail: detail})
	}
}
