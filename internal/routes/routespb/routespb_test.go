package routespb

import (
	"reflect"
	"regexp"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skeinmesh/skein/internal/routes"
)

// full is a policy with every field of every type set, so a field the
// conversion forgets shows up.
func full() *routes.Policy {
	serviceBreaker := &routes.Breaker{Consecutive: 7, SuccessRate: 0.8, Window: time.Minute, MinRequests: 20, MinPenalty: time.Second,
		MaxPenalty: time.Minute, Jitter: 0.1, FailureHTTP: []routes.StatusRange{{Min: 500, Max: 599}}, FailureGRPC: []int{14}, MaxEjectedPercent: 50}
	backend := routes.Backend{Authority: "web-v2.demo.svc.cluster.local:8080", Service: "demo/web-v2", Port: 8080, Weight: 10}
	rule := routes.Rule{
		Matches: []routes.Match{{
			Path:        &routes.PathMatch{Type: routes.PathRegex, Value: "/a.*", Regex: regexp.MustCompile("^(?:/a.*)$")},
			Method:      "GET",
			Headers:     []routes.ValueMatch{{Name: "x-a", Value: "1.*", Regex: regexp.MustCompile("^(?:1.*)$")}},
			QueryParams: []routes.ValueMatch{{Name: "q", Value: "v", Regex: regexp.MustCompile("^(?:v)$")}},
		}},
		RequestHeaders:  &routes.HeaderModifier{Set: []routes.Header{{Name: "x-s", Value: "1"}}, Add: []routes.Header{{Name: "x-a", Value: "2"}}, Remove: []string{"x-r"}},
		ResponseHeaders: &routes.HeaderModifier{Set: []routes.Header{{Name: "x-s", Value: "1"}}, Add: []routes.Header{{Name: "x-a", Value: "2"}}, Remove: []string{"x-r"}},
		Redirect:        &routes.Redirect{Scheme: "https", Hostname: "h", Port: 8443, Path: &routes.PathRewrite{Full: "/f", Prefix: "/p", IsPrefix: true}, StatusCode: 301},
		Rewrite:         &routes.Rewrite{Hostname: "h", Path: &routes.PathRewrite{Full: "/f", Prefix: "/p", IsPrefix: true}},
		Mirrors:         []routes.Mirror{{Backend: backend, Percent: 12.5, CompareHeaders: []string{"content-type"}}},
		Backends:        []routes.Backend{backend},
		Timeouts:        routes.Timeouts{Request: time.Second, BackendRequest: 2 * time.Second, ResponseHeader: 3 * time.Second, Idle: 4 * time.Second},
		Retry: &routes.Retry{Limit: 3, HTTP: []routes.StatusRange{{Min: 500, Max: 504}}, GatewayError: true, Reset: true, GRPC: []int{14, 8},
			PerTry: time.Second, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond, NonIdempotent: true},
		Breaker: &routes.Breaker{Consecutive: 3, SuccessRate: 0.9, Window: time.Second, MinRequests: 5, MinPenalty: time.Second,
			MaxPenalty: time.Hour, Jitter: 0.2, FailureHTTP: []routes.StatusRange{{Min: 429, Max: 429}}, FailureGRPC: []int{4}, MaxEjectedPercent: 30},
		Fault: &routes.Fault{AbortPercent: 10, AbortHTTP: 503, AbortGRPC: 14, DelayPercent: 5, Delay: time.Second},
	}
	shared := rule
	shared.Breaker = serviceBreaker
	defaults := rule
	defaults.Breaker = serviceBreaker
	return &routes.Policy{
		Service: "demo/web", Port: 8080,
		Routes:   []routes.Route{{Kind: "HTTPRoute", Namespace: "demo", Name: "split", Rules: []routes.Rule{rule, shared}}},
		Defaults: defaults,
		Budget:   routes.Budget{Ratio: 0.2, MinPerSecond: 10, TTL: 10 * time.Second},
	}
}

// allSet fails on any zero field reachable from v: the fixture must set
// everything for the round trip to prove anything.
func allSet(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("fixture leaves %s nil", path)
			return
		}
		if _, isRegexp := v.Interface().(*regexp.Regexp); isRegexp {
			return
		}
		allSet(t, path, v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			allSet(t, path+"."+v.Type().Field(i).Name, v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("fixture leaves %s empty", path)
		}
		for i := range v.Len() {
			allSet(t, path+"[]", v.Index(i))
		}
	default:
		if v.IsZero() {
			t.Errorf("fixture leaves %s zero", path)
		}
	}
}

func TestRoundTripKeepsEveryField(t *testing.T) {
	in := full()
	allSet(t, "Policy", reflect.ValueOf(in))
	wire := ToProto(in)
	data, err := proto.Marshal(wire)
	if err != nil {
		t.Fatal(err)
	}
	var decoded = ToProto(nil)
	if err := proto.Unmarshal(data, decoded); err != nil {
		t.Fatal(err)
	}
	out, err := FromProto(decoded)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", out, in)
	}
	if out.Routes[0].Rules[1].Breaker != out.Defaults.Breaker {
		t.Error("a rule sharing the Service's breaker must get the very pointer of Defaults.Breaker")
	}
	if out.Routes[0].Rules[0].Breaker == out.Defaults.Breaker {
		t.Error("a rule's own breaker must not be the Service's")
	}
}

func TestNoPolicy(t *testing.T) {
	p, err := FromProto(ToProto(nil))
	if p != nil || err != nil {
		t.Errorf("FromProto(ToProto(nil)) = %+v, %v", p, err)
	}
}

func TestBadRegexIsRefused(t *testing.T) {
	wire := ToProto(full())
	wire.Routes[0].Rules[0].Matches[0].Path.Regex = "a("
	if _, err := FromProto(wire); err == nil {
		t.Error("a bad regex from the wire must be refused")
	}
}
