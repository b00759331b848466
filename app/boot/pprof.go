package boot

import (
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// servePprof serves net/http/pprof on server.pprof_addr (a loopback
// address; config validation refuses any other) when it is set, for
// profiling under load: go tool pprof http://ADDR/debug/pprof/profile.
func (s *Server) servePprof() error {
	if s.cfg.Server.PprofAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Server.PprofAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.pprof.Serve(ln) }()
	s.Log.Info("profiling", "pprof", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}
