// Command testapp is the workload the end-to-end tests run inside test hosts:
// a gRPC server (grpc-go's interop TestService), an HTTP/1.1 server with
// chunked and WebSocket endpoints, and a server-speaks-first TCP server. Each
// answers with its id so tests can tell replicas apart. Not for production.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	id := flag.String("id", "", "replica id reported in answers")
	grpcAddr := flag.String("grpc", "", "gRPC listen address")
	delay := flag.Duration("delay", 0, "extra latency of every gRPC unary call")
	httpAddr := flag.String("http", "", "HTTP/1.1 listen address")
	bannerAddr := flag.String("banner", "", "server-speaks-first TCP listen address")
	call := flag.String("call", "", "act as a gRPC client: call this target's UnaryCall on one connection and report answers per replica")
	rate := flag.Int("rate", 50, "calls per second with -call")
	httpDelay := flag.Duration("http-delay", 0, "extra latency of every HTTP answer (not of -http-fail ones)")
	httpFail := flag.String("http-fail", "", "comma-separated path prefixes answered at once with 500")
	oddEvery := flag.Int("odd-every", 0, "with N > 0, every Nth /id answer is \"odd\" instead of the id")
	logInput := flag.Bool("log-input", false, "print a line for every HTTP request (\"request <uri>\") and banner line (\"line <text>\") received, so a test can tell what reached the application")
	flag.Parse()
	if *id == "" {
		*id = os.Getenv("POD_NAME") // set by skein up
	}
	if *id == "" {
		*id, _ = os.Hostname()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if *grpcAddr != "" {
		ln := listen(*grpcAddr)
		s := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
		testpb.RegisterTestServiceServer(s, &testService{id: *id, delay: *delay})
		go func() { <-ctx.Done(); s.GracefulStop() }()
		go func() { must(s.Serve(ln)) }()
	}
	if *httpAddr != "" {
		ln := listen(*httpAddr)
		h := httpHandler(*id, *oddEvery)
		h = shapeAnswers(h, *httpDelay, *httpFail)
		if *logInput {
			h = logRequests(h)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { <-ctx.Done(); srv.Shutdown(context.Background()) }()
		go func() {
			if err := srv.Serve(ln); err != http.ErrServerClosed {
				must(err)
			}
		}()
	}
	if *bannerAddr != "" {
		ln := listen(*bannerAddr)
		go func() { <-ctx.Done(); ln.Close() }()
		go serveBanner(ln, *id, *logInput)
	}
	if *call != "" {
		go callLoop(ctx, *call, *rate)
	}
	fmt.Println("ready")
	<-ctx.Done()
	// When, in the clock's nanoseconds, so that a test can tell the order
	// in which a pod's containers were stopped.
	fmt.Println("terminating", time.Now().UnixNano())
	time.Sleep(100 * time.Millisecond)
	fmt.Println("exiting", time.Now().UnixNano())
}

func listen(addr string) net.Listener {
	ln, err := net.Listen("tcp", addr)
	must(err)
	return ln
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

type testService struct {
	testpb.UnimplementedTestServiceServer
	id    string
	delay time.Duration
}

// UnaryCall answers with the replica id; a requested status is returned as
// the call's error so tests can make failures.
func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{
		ServerId: s.id,
		Payload:  &testpb.Payload{Body: make([]byte, req.GetResponseSize())},
	}, nil
}

// FullDuplexCall echoes every payload and ends with a trailer holding the
// SHA-256 of everything it received and the message count.
func (s *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	h := sha256.New()
	n := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("x-checksum", hex.EncodeToString(h.Sum(nil)), "x-count", strconv.Itoa(n), "x-server-id", s.id))
			return nil
		}
		if err != nil {
			return err
		}
		body := req.GetPayload().GetBody()
		h.Write(body)
		n++
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

// StreamingOutputCall sends one message per requested size.
func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

// StreamingInputCall adds up the sizes it received.
func (s *testService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func httpHandler(id string, oddEvery int) http.Handler {
	mux := http.NewServeMux()
	var idCalls atomic.Int64
	mux.HandleFunc("/id", func(w http.ResponseWriter, r *http.Request) {
		if n := idCalls.Add(1); oddEvery > 0 && n%int64(oddEvery) == 0 {
			fmt.Fprint(w, "odd")
			return
		}
		fmt.Fprint(w, id)
	})
	// /flaky/KEY fails (503) the first time it sees KEY and answers 200
	// after that; each request prints "flaky KEY N HASH", HASH covering the
	// method, URI, headers and body as they arrived, so a test can tell
	// that a retried request reached the application byte-identical.
	var flakyMu sync.Mutex
	flakySeen := map[string]int{}
	mux.HandleFunc("/flaky/{key}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := sha256.New()
		fmt.Fprintf(h, "%s %s\n", r.Method, r.RequestURI)
		r.Header.Write(h)
		h.Write(body)
		key := r.PathValue("key")
		flakyMu.Lock()
		flakySeen[key]++
		n := flakySeen[key]
		flakyMu.Unlock()
		fmt.Printf("flaky %s %d %x\n", key, n, h.Sum(nil))
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, id)
	})
	// /whoami answers with the address the connection came from.
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	})
	// /status/N answers with status N.
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "bad code", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
	})
	// /echo returns the body's SHA-256 and length, then streams the body
	// back chunked.
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(body)
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
		w.Header().Set("X-Transfer-Encoding-In", fmt.Sprint(r.TransferEncoding))
		for len(body) > 0 {
			n := min(len(body), 4096)
			w.Write(body[:n])
			w.(http.Flusher).Flush()
			body = body[n:]
		}
	})
	// /ws echoes whole WebSocket messages.
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(c, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(c, msg); err != nil {
				return
			}
		}
	}))
	return mux
}

// shapeAnswers delays every answer by delay, except those to paths under
// one of the comma-separated prefixes in fail, which get 500 at once.
func shapeAnswers(next http.Handler, delay time.Duration, fail string) http.Handler {
	var prefixes []string
	for p := range strings.SplitSeq(fail, ",") {
		if p != "" {
			prefixes = append(prefixes, p)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range prefixes {
			if strings.HasPrefix(r.URL.Path, p) {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		next.ServeHTTP(w, r)
	})
}

// logRequests prints every request's URI before handing it on.
func logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s\n", r.RequestURI)
		next.ServeHTTP(w, r)
	})
}

// serveBanner greets first ("220 ID ready"), then echoes lines until QUIT.
func serveBanner(ln net.Listener, id string, logInput bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "220 %s ready\r\n", id)
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if logInput {
					fmt.Printf("line %s\n", sc.Text())
				}
				if sc.Text() == "QUIT" {
					fmt.Fprint(c, "221 bye\r\n")
					return
				}
				fmt.Fprintf(c, "250 %s\r\n", sc.Text())
			}
		}()
	}
}

// callLoop calls target at rate on one connection and prints, every two
// seconds, a JSON line of answers per replica, failures so far, and the
// failures counted by their status (at most maxFailureKinds kinds; the
// rest under "other"), so that a test can say why calls failed.
func callLoop(ctx context.Context, target string, rate int) {
	cc, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(err)
	defer cc.Close()
	client := testpb.NewTestServiceClient(cc)
	counts := map[string]int{}
	failures := 0
	const maxFailureKinds = 20
	failed := map[string]int{}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	report := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-report.C:
			b, _ := json.Marshal(map[string]any{"calls": counts, "failures": failures, "failed": failed})
			fmt.Println(string(b))
		case <-tick.C:
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := client.UnaryCall(cctx, &testpb.SimpleRequest{FillServerId: true})
			cancel()
			if err != nil {
				failures++
				kind := status.Code(err).String() + ": " + status.Convert(err).Message()
				if _, ok := failed[kind]; !ok && len(failed) >= maxFailureKinds {
					kind = "other"
				}
				failed[kind]++
				continue
			}
			counts[resp.GetServerId()]++
		}
	}
}
