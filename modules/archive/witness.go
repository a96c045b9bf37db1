package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/palisade-im/palisade/modules/archive/cosignature"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// WitnessTimeout bounds one add-checkpoint exchange with a witness.
const WitnessTimeout = 10 * time.Second

// maxWitnessResponse bounds what is read of a witness's answer.
const maxWitnessResponse = 64 << 10

// Witness is a C2SP tlog-witness (https://c2sp.org/tlog-witness) that the
// module asks to cosign every checkpoint: it is sent the checkpoint with a
// consistency proof from the last size it cosigned, and cosigns only when
// the new tree extends that one.
type Witness struct {
	// URL is the submission prefix: the checkpoint goes to
	// URL/add-checkpoint.
	URL string
	// Verifier checks its cosignatures; its name names the witness.
	Verifier *cosignature.Verifier
	// Required marks the health status while the witness fails.
	Required bool
	// Client sends the requests (nil: a client that follows no
	// redirects); each exchange is bounded by WitnessTimeout.
	Client *http.Client
}

// Witnesses are the [[archive.witness]] tables of cfg.
func Witnesses(cfg *config.Config) ([]Witness, error) {
	var out []Witness
	for i, w := range cfg.Archive.Witnesses {
		v, err := cosignature.NewVerifier(w.Key)
		if err != nil {
			return nil, fmt.Errorf("archive.witness[%d].key: %w", i, err)
		}
		out = append(out, Witness{URL: w.URL, Verifier: v, Required: w.IsRequired()})
	}
	return out, nil
}

// WitnessVerifiers are the cosignature verifiers of cfg's witnesses.
func WitnessVerifiers(cfg *config.Config) ([]*cosignature.Verifier, error) {
	ws, err := Witnesses(cfg)
	if err != nil {
		return nil, err
	}
	out := make([]*cosignature.Verifier, len(ws))
	for i, w := range ws {
		out[i] = w.Verifier
	}
	return out, nil
}

// witnessState is one witness as the module's witness worker sees it.
type witnessState struct {
	Witness
	// cosigned is the last size it cosigned for this journal; -1 until
	// read from the journal.
	cosigned int64
	// failing tells that the health status is marked for it; splitView
	// that it answered with a tree this journal does not have (kept until
	// restart).
	failing, splitView bool
}

// witnessWorker submits checkpoints to the witnesses from its own
// goroutine, so that neither the checkpoint timer nor the message path
// waits for them. Only the latest checkpoint is submitted: the consistency
// proof bridges whatever was skipped.
type witnessWorker struct {
	ws     []*witnessState
	mu     sync.Mutex
	latest storage.Checkpoint // guarded by mu
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc
}

// SetWitnesses sets the witnesses asked to cosign each checkpoint; call
// before Start.
func (m *Module) SetWitnesses(ws []Witness) {
	if len(ws) == 0 {
		m.wit = nil
		return
	}
	w := &witnessWorker{kick: make(chan struct{}, 1)}
	for _, x := range ws {
		if x.Client == nil {
			// A redirect could lead a checkpoint past the url rules.
			x.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
		w.ws = append(w.ws, &witnessState{Witness: x, cosigned: -1})
	}
	m.wit = w
}

// noteCheckpoint makes c the checkpoint the witnesses are asked to cosign
// next and wakes the worker.
func (w *witnessWorker) noteCheckpoint(c storage.Checkpoint) {
	w.mu.Lock()
	if c.Size >= w.latest.Size {
		w.latest = c
	}
	w.mu.Unlock()
	w.wake()
}

func (w *witnessWorker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// startWitnesses starts the worker goroutine.
func (m *Module) startWitnesses() {
	w := m.wit
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.stop, w.done = cancel, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.kick:
				m.witnessRound(ctx)
			case <-w.stop:
				// One last round for the final checkpoint.
				m.witnessRound(ctx)
				return
			}
		}
	}()
	w.wake()
}

// stopWitnesses lets the worker submit the last checkpoint, waiting until
// ctx is done at most.
func (m *Module) stopWitnesses(ctx context.Context) {
	w := m.wit
	if w == nil || w.stop == nil {
		return
	}
	close(w.stop)
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel()
		<-w.done
	}
	w.cancel()
}

// witnessRound submits the latest checkpoint to every witness that has
// not cosigned it, all at once.
func (m *Module) witnessRound(ctx context.Context) {
	w := m.wit
	w.mu.Lock()
	cp := w.latest
	w.mu.Unlock()
	if cp.Size == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, ws := range w.ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.witness(ctx, ws, cp)
		}()
	}
	wg.Wait()
}

// errSplitView marks a witness answer that shows another tree than this
// journal's.
var errSplitView = errors.New("split view")

// witness asks one witness to cosign cp, and records the outcome: the
// cosignatures in the journal, an audit event, the health status.
func (m *Module) witness(ctx context.Context, ws *witnessState, cp storage.Checkpoint) {
	name := ws.Verifier.Name()
	if ws.cosigned < 0 {
		n, err := m.j.CosignedSize(ctx, name, ws.Verifier.KeyHash())
		if err != nil {
			m.witnessFailed(ws, cp.Size, err)
			return
		}
		ws.cosigned = n
	}
	if ws.cosigned == cp.Size {
		return
	}
	sigs, err := m.cosign(ctx, ws, cp)
	if errors.Is(err, errSplitView) {
		ws.splitView = true
		m.log.Error("archive witness shows a split view: the journal's history may have been rewritten, or its key used elsewhere",
			zap.String("witness", name), zap.Int64("size", cp.Size), zap.Error(err))
		m.audit.Error("archive_witness_split_view", zap.String("witness", name), zap.Int64("size", cp.Size), zap.String("error", err.Error()))
		m.health("archive-witness:"+name, "split view: "+err.Error())
		return
	}
	if err != nil {
		m.witnessFailed(ws, cp.Size, err)
		return
	}
	for _, s := range sigs {
		at, err := cosignature.Timestamp(s)
		if err == nil {
			err = m.j.AddCosignature(ctx, storage.Cosignature{Size: cp.Size, Witness: name, KeyHash: s.Hash, Time: at, Line: cosignature.Line(s)})
		}
		if err != nil {
			m.witnessFailed(ws, cp.Size, fmt.Errorf("keep cosignature: %w", err))
			return
		}
	}
	old := ws.cosigned
	ws.cosigned = cp.Size
	m.audit.Info("archive_witness_cosigned", zap.String("witness", name), zap.Int64("size", cp.Size), zap.Int64("old", old))
	if ws.failing && !ws.splitView {
		ws.failing = false
		m.health("archive-witness:"+name, "")
	}
}

func (m *Module) witnessFailed(ws *witnessState, size int64, err error) {
	name := ws.Verifier.Name()
	m.log.Error("archive witness failed", zap.String("witness", name), zap.String("url", ws.URL), zap.Int64("size", size), zap.Error(err))
	m.audit.Warn("archive_witness_failed", zap.String("witness", name), zap.Int64("size", size), zap.String("error", err.Error()))
	if ws.Required && !ws.splitView {
		ws.failing = true
		m.health("archive-witness:"+name, err.Error())
	}
}

// cosign runs the add-checkpoint exchange: from the size the witness last
// cosigned, and once more from the size it says it has when that differs
// (409) and is not larger than cp. A split view is a larger size than
// cp's, another root at cp's size, or a consistency proof from this
// journal that the witness refuses (422).
func (m *Module) cosign(ctx context.Context, ws *witnessState, cp storage.Checkpoint) ([]note.Signature, error) {
	old := ws.cosigned
	if old > cp.Size {
		return nil, fmt.Errorf("%w: the journal holds its cosignature of size %d, larger than the latest checkpoint (%d)", errSplitView, old, cp.Size)
	}
	for attempt := 0; ; attempt++ {
		sigs, known, err := m.addCheckpoint(ctx, ws, old, cp)
		if err == nil {
			return sigs, nil
		}
		var unproc *unprocessableError
		switch {
		case known > cp.Size:
			return nil, fmt.Errorf("%w: the witness has cosigned size %d, larger than this journal's tree (%d)", errSplitView, known, cp.Size)
		case known == old && old == cp.Size, errors.As(err, &unproc) && old == cp.Size:
			// Same size, and still refused: its tree of that size has
			// another root.
			return nil, fmt.Errorf("%w: the witness holds another tree of size %d: %v", errSplitView, cp.Size, err)
		case errors.As(err, &unproc):
			// The proof comes from this journal's own hashes: if it does
			// not verify, the witness's tree of size old (one it cosigned)
			// is not a prefix of this one.
			return nil, fmt.Errorf("%w: the witness's tree of size %d is not a prefix of this journal's tree of size %d (history rewritten, or another journal signed with this key): %v", errSplitView, old, cp.Size, err)
		case known >= 0 && attempt == 0:
			old = known
			continue
		}
		return nil, err
	}
}

// unprocessableError is a 422 answer: the consistency proof did not
// verify against the witness's tree.
type unprocessableError struct{ msg string }

func (e *unprocessableError) Error() string { return e.msg }

// addCheckpoint POSTs cp with a proof from old. It returns the witness's
// cosignatures of cp, or the size the witness says it has (409 Conflict,
// else -1) with an error.
func (m *Module) addCheckpoint(ctx context.Context, ws *witnessState, old int64, cp storage.Checkpoint) ([]note.Signature, int64, error) {
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", old)
	if old > 0 && old < cp.Size {
		proof, err := tlog.ProveTree(cp.Size, old, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			return m.j.ReadHashes(ctx, idx)
		}))
		if err != nil {
			return nil, -1, fmt.Errorf("consistency proof from %d to %d: %w", old, cp.Size, err)
		}
		for _, h := range proof {
			body.WriteString(h.String() + "\n")
		}
	}
	body.WriteByte('\n')
	body.Write(cp.Note)

	ctx, cancel := context.WithTimeout(ctx, WitnessTimeout)
	defer cancel()
	url := strings.TrimSuffix(ws.URL, "/") + "/add-checkpoint"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &body)
	if err != nil {
		return nil, -1, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := ws.Client.Do(req)
	if err != nil {
		return nil, -1, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxWitnessResponse))
	if err != nil {
		return nil, -1, fmt.Errorf("%s: read answer: %w", url, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		sigs, err := checkCosignatures(cp.Note, data, ws.Verifier)
		if err != nil {
			return nil, -1, fmt.Errorf("%s: %w", url, err)
		}
		return sigs, -1, nil
	case http.StatusConflict:
		if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "text/x.tlog.size" {
			s := strings.TrimSuffix(string(data), "\n")
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
				return nil, -1, fmt.Errorf("%s: 409 Conflict with a bad tree size %q", url, data)
			}
			return nil, n, fmt.Errorf("%s: 409 Conflict: the witness has cosigned size %d, not %d", url, n, old)
		}
	case http.StatusUnprocessableEntity:
		return nil, -1, &unprocessableError{fmt.Sprintf("%s: 422 Unprocessable Entity: the consistency proof from size %d does not verify against the witness's tree of that size: %s", url, old, short(data))}
	case http.StatusNotFound, http.StatusForbidden:
		return nil, -1, fmt.Errorf("%s: %s: the witness does not know this log's origin or key (register them: palisade archive pubkey): %s", url, resp.Status, short(data))
	}
	return nil, -1, fmt.Errorf("%s: %s: %s", url, resp.Status, short(data))
}

// short is the start of an error body, for messages.
func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// checkCosignatures checks a witness's 200 answer: note signature lines
// that, appended to the checkpoint, verify with v. Lines of other keys are
// ignored; a line of v's key that does not verify is an error.
func checkCosignatures(cp, answer []byte, v *cosignature.Verifier) ([]note.Signature, error) {
	if len(answer) == 0 || answer[len(answer)-1] != '\n' {
		return nil, errors.New("answer is not newline-terminated signature lines")
	}
	for _, l := range strings.SplitAfter(string(answer), "\n") {
		if l != "" && !strings.HasPrefix(l, "\u2014 ") {
			return nil, fmt.Errorf("answer line %q is not a signature line", short([]byte(l)))
		}
	}
	_, sigs, err := cosignature.Open(append(bytes.Clone(cp), answer...), v)
	if err != nil {
		return nil, err
	}
	return sigs, nil
}
