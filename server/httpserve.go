package server

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap"
)

// maxPanicText bounds the panic value and error-log detail written to the
// log (one line each, never a stack trace).
const maxPanicText = 256

// newHTTPServer is an http.Server for one of the listeners: HTTP/1.1 only
// (no h2 in ALPN, no HTTP/2 upgrade), bounded header and timeouts, every
// handler wrapped by guardHandler, and net/http's own error log turned
// into bounded structured lines. tlsCfg nil: plain HTTP.
func newHTTPServer(h http.Handler, tlsCfg *tls.Config, log *zap.Logger) *http.Server {
	hs := &http.Server{
		Handler:           guardHandler(h, log),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          httpErrorLog(log),
		// A non-nil empty map: net/http configures no HTTP/2, so ALPN
		// offers http/1.1 only and a WebSocket upgrade always finds a
		// connection it can hijack (an h2 stream has none).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	if tlsCfg != nil {
		c := tlsCfg.Clone()
		c.NextProtos = []string{"http/1.1"}
		hs.TLSConfig = c
	}
	return hs
}

// guardHandler recovers a panic in h: it is logged as one bounded line
// (the value and the panicking function, no stack trace; the logger's
// rate limit summarises floods), and the connection is closed by
// re-panicking with http.ErrAbortHandler, which net/http does not log.
func guardHandler(h http.Handler, log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			log.Error("http handler panic", zap.String("path", truncate(r.URL.Path, 128)),
				zap.String("proto", r.Proto), zap.String("remote", r.RemoteAddr),
				zap.String("panic", truncate(fmt.Sprint(v), maxPanicText)), zap.String("at", panicSite()))
			panic(http.ErrAbortHandler)
		}()
		h.ServeHTTP(w, r)
	})
}

// panicSite names the function that panicked: the first frame below the
// runtime's panic machinery.
func panicSite() string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs) // panicSite, the deferred function, runtime.gopanic...
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") {
			return truncate(fmt.Sprintf("%s (%s:%d)", f.Function, f.File, f.Line), maxPanicText)
		}
		if !more {
			return ""
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// httpErrorLog turns net/http's error log (TLS handshake errors, bad
// requests, panics it recovered itself) into warnings whose message is the
// kind of error without the client's address, so that the logger's rate
// limit groups a flood of them; the line itself is a bounded field.
func httpErrorLog(l *zap.Logger) *log.Logger {
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ log *zap.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		line = line[:i] // a stack trace follows: keep the first line
	}
	msg, prefixed := strings.CutPrefix(line, "http: ")
	for _, sep := range []string{" from ", " serving ", ": "} {
		if i := strings.Index(msg, sep); i > 0 {
			msg = msg[:i]
			break
		}
	}
	if prefixed {
		msg = "http: " + msg
	}
	w.log.Warn(truncate(msg, 64), zap.String("detail", truncate(line, maxPanicText)))
	return len(p), nil
}
