package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/tap"
)

// tapFlags are the flags of tap and top: where the API is and what to tap.
type tapFlags struct {
	api       string
	namespace string
	to        string
	method    string
	path      string
	authority string
	route     string
	maxRPS    int
}

func addTapFlags(cmd *cobra.Command) *tapFlags {
	f := &tapFlags{}
	cmd.Flags().StringVar(&f.api, "api", defaultMetricsAPI,
		"the controller's metrics API: unix:PATH, a socket path, or an http(s):// URL")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "default", "namespace of RESOURCE and --to")
	cmd.Flags().StringVar(&f.to, "to", "", "only requests to this resource (KIND/NAME), outbound")
	cmd.Flags().StringVar(&f.method, "method", "", "only requests with this HTTP method")
	cmd.Flags().StringVar(&f.path, "path", "", "only requests whose path starts with this")
	cmd.Flags().StringVar(&f.authority, "authority", "", "only requests to this authority (host[:port])")
	cmd.Flags().StringVar(&f.route, "route", "", "only requests a route of this name matched (namespace/name)")
	cmd.Flags().IntVar(&f.maxRPS, "max-rps", 0, "events a second each proxy may send, 1-1000 (default 100); the rest are counted as dropped")
	return f
}

func (f *tapFlags) params(resource string) url.Values {
	q := url.Values{tap.ParamNamespace: {f.namespace}, tap.ParamResource: {resource}}
	for name, v := range map[string]string{tap.ParamTo: f.to, tap.ParamMethod: f.method, tap.ParamPath: f.path,
		tap.ParamAuthority: f.authority, tap.ParamRoute: f.route} {
		if v != "" {
			q.Set(name, v)
		}
	}
	if f.maxRPS != 0 {
		q.Set(tap.ParamMaxRPS, strconv.Itoa(f.maxRPS))
	}
	return q
}

// readTap opens the tap API and calls each with every event until ctx
// ends, the stream does, or each fails. The end of ctx is no error.
func (f *tapFlags) readTap(ctx context.Context, resource string, each func(tap.Event) error) error {
	client, err := newMetricsClient(f.api)
	if err != nil {
		return err
	}
	body, err := client.stream(ctx, tap.APIPath, f.params(resource))
	if err != nil {
		return err
	}
	defer body.Close()
	lines := bufio.NewScanner(body)
	lines.Buffer(make([]byte, 64<<10), 1<<20) // bodies may be 64 KiB, escaped
	for lines.Scan() {
		var e tap.Event
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			return fmt.Errorf("decoding a tap event: %w", err)
		}
		if err := each(e); err != nil {
			return err
		}
	}
	if err := lines.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("reading the tap stream: %w", err)
	}
	return nil
}

func newTapCommand() *cobra.Command {
	var flags *tapFlags
	var output string
	var headers []string
	cmd := &cobra.Command{
		Use:   "tap RESOURCE",
		Short: "Watch the requests of a namespace, workload, pod or service live",
		Long: `Streams the requests the proxies of RESOURCE see (KIND/NAME: ns/demo,
deploy/web, po/web-0, svc/web) as they happen, until interrupted: one line
when a request starts (req), when its response starts (rsp) and when it
ends (end), with the source, destination, TLS, method, path, status,
latency and gRPC status. Filters narrow what is shown. Each proxy sends at
most --max-rps events a second; the rest are counted and shown as
"dropped". Header values in the redaction list (Authorization, Cookie,
Set-Cookie, Proxy-Authorization and what the workload adds) show as
[REDACTED]. Body prefixes appear only for workloads that opted in
(docs/controller.md). -o wide adds identities and workloads; --header NAME
adds a column of that header's value; -o json prints each event as a JSON
line (fields in docs/cli.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != outputTable && output != outputWide && output != outputJSON {
				return fmt.Errorf("unknown output format %q (want table, wide or json)", output)
			}
			w := cmd.OutOrStdout()
			enc := json.NewEncoder(w)
			return flags.readTap(cmd.Context(), args[0], func(e tap.Event) error {
				if output == outputJSON {
					return enc.Encode(e)
				}
				_, err := io.WriteString(w, formatTapEvent(e, output == outputWide, headers)+"\n")
				return err
			})
		},
	}
	flags = addTapFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", outputTable, "output format: table, wide or json")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "show this request or response header's value as a column (repeatable)")
	return cmd
}

// formatTapEvent is one line of skein tap, in the style of linkerd viz tap.
func formatTapEvent(e tap.Event, wide bool, headers []string) string {
	var b strings.Builder
	switch e.Kind {
	case tap.KindDropped:
		fmt.Fprintf(&b, "dropped proxy=%s count=%d", e.Proxy, e.Dropped)
		return b.String()
	case tap.KindError:
		fmt.Fprintf(&b, "error proxy=%s error=%q", e.Proxy, e.Error)
		return b.String()
	case tap.KindRequest:
		b.WriteString("req")
	case tap.KindResponse:
		b.WriteString("rsp")
	case tap.KindEnd:
		b.WriteString("end")
	default:
		fmt.Fprintf(&b, "%s proxy=%s", e.Kind, e.Proxy)
		return b.String()
	}
	dir := "in"
	if e.Direction == "outbound" {
		dir = "out"
	}
	fmt.Fprintf(&b, " id=%s:%d proxy=%s src=%s dst=%s tls=%t", e.Proxy, e.Stream, dir, e.Source.Address, e.Dest.Address, mtls(e))
	if wide {
		fmt.Fprintf(&b, " src_res=%s dst_res=%s src_id=%s dst_id=%s", resourceOf(e.Source), resourceOf(e.Dest), orDash(e.Source.Identity), orDash(e.Dest.Identity))
	}
	switch e.Kind {
	case tap.KindRequest:
		fmt.Fprintf(&b, " :method=%s :authority=%s :path=%s", e.Method, e.Authority, e.Path)
		if e.Route != "" {
			fmt.Fprintf(&b, " route=%s", e.Route)
		}
	case tap.KindResponse:
		fmt.Fprintf(&b, " :status=%d latency=%s", e.Status, formatMs(e.LatencyMs))
	case tap.KindEnd:
		if e.GRPCStatus != nil {
			fmt.Fprintf(&b, " grpc-status=%s", grpcStatusName(*e.GRPCStatus))
		}
		fmt.Fprintf(&b, " duration=%s response-length=%dB", formatMs(e.DurationMs), e.ResponseBytes)
		if e.Status == 0 && e.Error != "" {
			fmt.Fprintf(&b, " error=%q", e.Error)
		}
	}
	if e.Kind != tap.KindEnd {
		for _, name := range headers {
			fmt.Fprintf(&b, " %s=%s", strings.ToLower(name), headerValue(e.Headers, name))
		}
	}
	if e.Body != "" {
		fmt.Fprintf(&b, " body=%q", e.Body)
		if e.BodyTruncated {
			b.WriteString(" body-truncated=true")
		}
	}
	return b.String()
}

// mtls: the peer proved an identity (inbound: the client; outbound: the
// server).
func mtls(e tap.Event) bool {
	if e.Direction == "outbound" {
		return e.Dest.Identity != ""
	}
	return e.Source.Identity != ""
}

// resourceOf names a peer: namespace/workload, else the pod, else its IP.
func resourceOf(p tap.Peer) string {
	switch {
	case p.Workload != "":
		return p.Namespace + "/" + p.Workload
	case p.Pod != "":
		return p.Namespace + "/" + p.Pod
	case p.Service != "":
		return p.Namespace + "/svc/" + p.Service
	}
	if host, _, err := net.SplitHostPort(p.Address); err == nil {
		return host
	}
	return orDash(p.Address)
}

func headerValue(hs []tap.Header, name string) string {
	var values []string
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			values = append(values, h.Value)
		}
	}
	if len(values) == 0 {
		return "-"
	}
	return strconv.Quote(strings.Join(values, ","))
}

// formatMs: µs under a millisecond, ms with one decimal under ten.
func formatMs(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 10:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.0fms", ms)
	}
}

var grpcCodeNames = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

func grpcStatusName(code int) string {
	if code >= 0 && code < len(grpcCodeNames) {
		return grpcCodeNames[code]
	}
	return strconv.Itoa(code)
}
