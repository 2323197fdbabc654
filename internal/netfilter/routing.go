package netfilter

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// The tproxy mode's policy routing: marked packets are looked up in
// TProxyTable, whose only route delivers everything locally.
func markRule(f family, verb string) step {
	return step{args: []string{"ip", f.ipFlag, "rule", verb, "fwmark", fmt.Sprintf("0x%x", TProxyMark), "lookup", strconv.Itoa(TProxyTable)}}
}

func localRoute(f family, verb string) step {
	return step{args: []string{"ip", f.ipFlag, "route", verb, "local", "default", "dev", "lo", "table", strconv.Itoa(TProxyTable)}}
}

// routingState is what `ip -j rule show` and `ip -j route show table all`
// say about our rule and route.
type routingState struct {
	hasRule, hasRoute bool
}

func parseRouting(rulesJSON, routesJSON string) (routingState, error) {
	var rules []struct {
		FWMark string `json:"fwmark"`
		Table  string `json:"table"`
	}
	if err := json.Unmarshal([]byte(rulesJSON), &rules); err != nil {
		return routingState{}, fmt.Errorf("reading ip rule output: %w", err)
	}
	var routes []struct {
		Type, Dst, Dev, Table string
	}
	if err := json.Unmarshal([]byte(routesJSON), &routes); err != nil {
		return routingState{}, fmt.Errorf("reading ip route output: %w", err)
	}
	var s routingState
	table := strconv.Itoa(TProxyTable)
	for _, r := range rules {
		if r.FWMark == fmt.Sprintf("0x%x", TProxyMark) && r.Table == table {
			s.hasRule = true
		}
	}
	for _, r := range routes {
		if r.Type == "local" && r.Dst == "default" && r.Dev == "lo" && r.Table == table {
			s.hasRoute = true
		}
	}
	return s, nil
}

// routingSteps returns the ip commands that bring the state to want.
// Routing comes before iptables when adding, after it when removing, so
// marked packets always have a route.
func routingSteps(f family, current routingState, want bool) []step {
	var steps []step
	if want {
		if !current.hasRule {
			steps = append(steps, markRule(f, "add"))
		}
		if !current.hasRoute {
			steps = append(steps, localRoute(f, "add"))
		}
		return steps
	}
	if current.hasRule {
		steps = append(steps, markRule(f, "del"))
	}
	if current.hasRoute {
		steps = append(steps, localRoute(f, "del"))
	}
	return steps
}
