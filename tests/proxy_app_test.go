package tests

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testApp is the small application behind a node's proxy: an HTTP server
// in the test process that uses app.db and other.db through the node's
// mount with go-sqlite3. Every answer names the node that served it.
type testApp struct {
	name string
	ln   net.Listener
	srv  *http.Server

	mu  sync.Mutex
	dbs map[string]*sql.DB // by database name, set by open
}

// startApp listens on a free loopback port and serves until the test ends;
// it reaches the databases once open names the node.
func startApp(t *testing.T, name string) *testApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &testApp{name: name, ln: ln, dbs: map[string]*sql.DB{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /items/{db}", a.insert)
	mux.HandleFunc("GET /items/{db}/{id}", a.get)
	mux.HandleFunc("GET /write-on-get", a.writeOnGet)
	mux.HandleFunc("POST /upload", a.upload)
	mux.HandleFunc("GET /always/blob", a.blob)
	mux.HandleFunc("GET /ws", a.websocket)
	mux.HandleFunc("GET /always/ws", a.websocket)
	mux.HandleFunc("GET /sse", a.sse)
	mux.HandleFunc("GET /always/sse", a.sse)
	mux.HandleFunc("/", a.echo)
	a.srv = &http.Server{Handler: mux}
	go func() { _ = a.srv.Serve(ln) }()
	t.Cleanup(func() { _ = a.srv.Close() })
	return a
}

// Addr is the application's address (proxy.target).
func (a *testApp) Addr() string { return a.ln.Addr().String() }

// open makes the application use n's databases.
func (a *testApp) open(t *testing.T, n *Node) {
	t.Helper()
	for _, name := range []string{"app.db", "other.db"} {
		db := OpenDB(t, n.DBPath(name), "")
		a.mu.Lock()
		a.dbs[name] = db
		a.mu.Unlock()
	}
}

func (a *testApp) db(w http.ResponseWriter, name string) *sql.DB {
	a.mu.Lock()
	defer a.mu.Unlock()
	db := a.dbs[name]
	if db == nil {
		http.Error(w, "no database "+name, http.StatusNotFound)
	}
	return db
}

// insert: POST /items/{db} stores the body, answers "id=<id> node=<name>".
func (a *testApp) insert(w http.ResponseWriter, r *http.Request) {
	db := a.db(w, r.PathValue("db"))
	if db == nil {
		return
	}
	body, _ := io.ReadAll(r.Body)
	res, err := db.ExecContext(r.Context(), `INSERT INTO items(v) VALUES(?)`, string(body))
	if err != nil {
		http.Error(w, "insert: "+err.Error(), http.StatusInternalServerError)
		return
	}
	id, _ := res.LastInsertId()
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "id=%d node=%s", id, a.name)
}

// get: GET /items/{db}/{id} answers the stored value, 404 if absent.
func (a *testApp) get(w http.ResponseWriter, r *http.Request) {
	db := a.db(w, r.PathValue("db"))
	if db == nil {
		return
	}
	var v string
	err := db.QueryRowContext(r.Context(), `SELECT v FROM items WHERE id = ?`, r.PathValue("id")).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		http.Error(w, "no item "+r.PathValue("id")+" on "+a.name, http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		fmt.Fprintf(w, "%s node=%s", v, a.name)
	}
}

// writeOnGet: GET /write-on-get writes (as apps that store sessions on GET
// do): 500 where the write is refused.
func (a *testApp) writeOnGet(w http.ResponseWriter, r *http.Request) {
	db := a.db(w, "app.db")
	if db == nil {
		return
	}
	if _, err := db.ExecContext(r.Context(), `INSERT INTO items(v) VALUES('from a GET')`); err != nil {
		http.Error(w, "write failed on "+a.name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "wrote node=%s", a.name)
}

// upload: POST /upload hashes the streamed body and records its size.
func (a *testApp) upload(w http.ResponseWriter, r *http.Request) {
	db := a.db(w, "app.db")
	if db == nil {
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if _, err := db.ExecContext(r.Context(), `INSERT INTO items(v) VALUES(?)`, fmt.Sprintf("upload %d %s", n, sum)); err != nil {
		http.Error(w, "insert: "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "size=%d sha256=%s node=%s", n, sum, a.name)
}

// blob: GET /always/blob?n= streams n pattern bytes (chunked, no length).
func (a *testApp) blob(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil {
		http.Error(w, "want ?n=<bytes>", http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Node", a.name)
	_, _ = io.Copy(w, &patternReader{n: n})
}

// echo answers any other request with what the app saw of it.
func (a *testApp) echo(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "node=%s method=%s path=%s token=%q forwarded=%q auth=%q proto=%q xff=%q",
		a.name, r.Method, r.URL.Path, r.Header.Get("Litefs-Proxy-Token"), r.Header.Get("Litefs-Proxy-Forwarded"), r.Header.Get("Authorization"),
		r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-For"))
}

// sse: GET /sse sends three events (or ?n=) 300 ms apart, flushing each.
func (a *testApp) sse(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil {
		n = 3
	}
	for i := range n {
		fmt.Fprintf(w, "data: event %d from %s\n\n", i, a.name)
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// wsGUID is the fixed GUID of the WebSocket handshake (RFC 6455).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// websocket: GET /ws is a WebSocket echo of text frames (RFC 6455, just
// enough of it: unfragmented frames under 64 KiB).
func (a *testApp) websocket(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want a websocket upgrade", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		wsAccept(r.Header.Get("Sec-WebSocket-Key")))
	if brw.Flush() != nil {
		return
	}
	for {
		op, msg, err := wsRead(brw.Reader)
		if err != nil || op == 8 { // close
			return
		}
		if wsWrite(conn, op, []byte(string(msg)+" from "+a.name), false) != nil {
			return
		}
	}
}

// wsRead reads one frame, unmasking it.
func wsRead(r *bufio.Reader) (op byte, payload []byte, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	} else if n == 127 {
		return 0, nil, errors.New("frame too large for the test")
	}
	var mask [4]byte
	masked := hdr[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return hdr[0] & 0x0f, payload, nil
}

// wsWrite writes one final frame; clients must mask.
func wsWrite(w io.Writer, op byte, payload []byte, mask bool) error {
	b := []byte{0x80 | op}
	m := byte(0)
	if mask {
		m = 0x80
	}
	if len(payload) < 126 {
		b = append(b, m|byte(len(payload)))
	} else {
		b = append(b, m|126, byte(len(payload)>>8), byte(len(payload)))
	}
	p := append([]byte(nil), payload...)
	if mask {
		key := []byte{0x12, 0x34, 0x56, 0x78}
		b = append(b, key...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	_, err := w.Write(append(b, p...))
	return err
}

// wsEcho opens a WebSocket at addr+path, sends msg and returns the echo.
func wsEcho(ctx context.Context, addr, path, msg string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	key := base64.StdEncoding.EncodeToString([]byte("litefs-proxy-key"))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		body, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("handshake: %s accept=%q: %s", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"), body)
	}
	if err := wsWrite(conn, 1, []byte(msg), true); err != nil {
		return "", err
	}
	_, reply, err := wsRead(br)
	if err != nil {
		return "", fmt.Errorf("read echo: %w", err)
	}
	_ = wsWrite(conn, 8, nil, true)
	return string(reply), nil
}
