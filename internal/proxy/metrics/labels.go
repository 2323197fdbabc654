package metrics

// The label set, fixed so dashboards can rely on it:
//
//	direction      "inbound" (a client calling this workload) or "outbound"
//	               (this workload calling out)
//	authority      outbound: the destination discovery resolved the request
//	               to; Unknown when it resolved nothing, and always Unknown
//	               inbound (HTTP only)
//	target_addr    the ip:port the connection or request was sent to;
//	               inbound, Unknown for a port the application does not
//	               listen on (the client picks the port)
//	tls            see the TLS* constants
//	client_id      the peer's mesh identity on inbound mTLS, else empty
//	server_id      the identity the server proved on outbound mTLS, else empty
//	route_name     the route that matched, empty when none (HTTP only)
//	dst_namespace, dst_service, dst_workload, dst_pod
//	               outbound: the endpoint's discovery labels (see
//	               DstFromEndpointLabels); inbound: this proxy's own workload
//
// No label value is taken from what a client sends (Host, :authority, any
// header): every value is either fixed, resolved by discovery, proved by
// mesh TLS, or one of a bounded set (status_code 100-599, grpc_status 0-16,
// errno). A client that invents Hosts or headers therefore cannot make the
// proxy keep new series.
//
// response_total and response_latency_ms add status_code, grpc_status and
// classification (see RequestRecorder.Response); tcp_close_total adds errno.
// TCP metrics do not carry authority or route_name.
var (
	httpLabelNames = []string{
		"direction", "authority", "target_addr", "tls", "client_id", "server_id", "route_name",
		"dst_namespace", "dst_service", "dst_workload", "dst_pod",
	}
	responseLabelNames = append(append([]string(nil), httpLabelNames...),
		"status_code", "grpc_status", "classification")

	tcpLabelNames = []string{
		"direction", "target_addr", "tls", "client_id", "server_id",
		"dst_namespace", "dst_service", "dst_workload", "dst_pod",
	}
	tcpCloseLabelNames = append(append([]string(nil), tcpLabelNames...), "errno")
)

// Unknown is the authority of a request discovery did not resolve, and of
// every inbound request.
const Unknown = "unknown"

// Values of the direction label.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
)

// Values of the tls label.
const (
	// TLSTrue: the connection is mesh mTLS (client_id / server_id say who).
	TLSTrue = "true"
	// TLSNoIdentity: plaintext because the peer has no mesh identity (an
	// unmeshed client, or a destination discovery announced no identity for).
	TLSNoIdentity = "no_identity"
	// TLSDisabled: plaintext because this proxy runs with mesh TLS turned off
	// (or has no certificate for this connection's purpose).
	TLSDisabled = "disabled"
)

// HTTPLabels are the labels of one request's request_total, response_total
// and response_latency_ms series. It is a comparable value so the proxy can
// build it per request without allocating.
type HTTPLabels struct {
	Direction  string
	Authority  string
	TargetAddr string
	TLS        string
	ClientID   string
	ServerID   string
	RouteName  string
	Dst        DstLabels
}

func (l HTTPLabels) values() []string {
	return []string{
		l.Direction, l.Authority, l.TargetAddr, l.TLS, l.ClientID, l.ServerID, l.RouteName,
		l.Dst.Namespace, l.Dst.Service, l.Dst.Workload, l.Dst.Pod,
	}
}

// TCPLabels are the labels of one connection's tcp_* series.
type TCPLabels struct {
	Direction  string
	TargetAddr string
	TLS        string
	ClientID   string
	ServerID   string
	Dst        DstLabels
}

func (l TCPLabels) values() []string {
	return []string{
		l.Direction, l.TargetAddr, l.TLS, l.ClientID, l.ServerID,
		l.Dst.Namespace, l.Dst.Service, l.Dst.Workload, l.Dst.Pod,
	}
}

// DstLabels describe the workload on the far side: dst_namespace,
// dst_service, dst_workload, dst_pod.
type DstLabels struct {
	Namespace string
	Service   string
	Workload  string
	Pod       string
}

// Keys DstFromEndpointLabels reads from an endpoint's discovery labels
// (discovery.Endpoint.Labels). Sources should set these.
const (
	EndpointLabelNamespace = "namespace"
	EndpointLabelService   = "service"
	EndpointLabelWorkload  = "workload"
	EndpointLabelPod       = "pod"
)

// DstFromEndpointLabels picks the dst_* label values out of an endpoint's
// discovery labels (keys "namespace", "service", "workload", "pod"; missing
// keys give empty values, other keys are ignored).
func DstFromEndpointLabels(m map[string]string) DstLabels {
	return DstLabels{
		Namespace: m[EndpointLabelNamespace],
		Service:   m[EndpointLabelService],
		Workload:  m[EndpointLabelWorkload],
		Pod:       m[EndpointLabelPod],
	}
}
