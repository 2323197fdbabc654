package web

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/skeinmesh/skein/proto/demo"
)

// backendTimeout bounds each call to a back end.
const backendTimeout = 3 * time.Second

// Emoji is one entry of /api/list and /api/leaderboard.
type Emoji struct {
	Name    string `json:"name"`
	Unicode string `json:"unicode"`
	// Votes is set in /api/leaderboard only.
	Votes int64 `json:"votes,omitempty"`
}

// ListResponse is the body of GET /api/list.
type ListResponse struct {
	Emoji []Emoji `json:"emoji"`
}

// VoteResponse is the body of a successful GET /api/vote.
type VoteResponse struct {
	Voted string `json:"voted"`
}

// LeaderboardResponse is the body of GET /api/leaderboard: the voting
// replica's counts, most votes first.
type LeaderboardResponse struct {
	Results []Emoji `json:"results"`
}

// ErrorResponse is the body of every failed API call.
type ErrorResponse struct {
	Error string `json:"error"`
}

type api struct {
	emoji  pb.EmojiClient
	voting pb.VotingClient
}

// NewHandler returns web's routes: the page at /, the JSON API under /api/
// and /ready for readiness probes.
func NewHandler(emoji pb.EmojiClient, voting pb.VotingClient) http.Handler {
	a := &api{emoji: emoji, voting: voting}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", servePage)
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /api/list", a.list)
	mux.HandleFunc("GET /api/vote", a.vote)
	mux.HandleFunc("GET /api/leaderboard", a.leaderboard)
	return mux
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	resp, err := a.emoji.List(ctx, &pb.ListRequest{})
	if err != nil {
		fail(w, r, "emoji.List", err)
		return
	}
	out := ListResponse{Emoji: make([]Emoji, 0, len(resp.GetEmoji()))}
	for _, e := range resp.GetEmoji() {
		out.Emoji = append(out.Emoji, Emoji{Name: e.GetName(), Unicode: e.GetUnicode()})
	}
	writeJSON(w, http.StatusOK, out)
}

// vote checks that the choice exists, then votes for it. A vote the voting
// service refuses (the sold-out choice) is a 500.
func (a *api) vote(w http.ResponseWriter, r *http.Request) {
	choice := r.URL.Query().Get("choice")
	if choice == "" {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "query parameter choice is required"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	if _, err := a.emoji.Find(ctx, &pb.FindRequest{Name: choice}); err != nil {
		fail(w, r, "emoji.Find", err)
		return
	}
	if _, err := a.voting.Vote(ctx, &pb.VoteRequest{Choice: choice}); err != nil {
		fail(w, r, "voting.Vote", err)
		return
	}
	writeJSON(w, http.StatusOK, VoteResponse{Voted: choice})
}

func (a *api) leaderboard(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	results, err := a.voting.Results(ctx, &pb.ResultsRequest{})
	if err != nil {
		fail(w, r, "voting.Results", err)
		return
	}
	list, err := a.emoji.List(ctx, &pb.ListRequest{})
	if err != nil {
		fail(w, r, "emoji.List", err)
		return
	}
	unicode := make(map[string]string, len(list.GetEmoji()))
	for _, e := range list.GetEmoji() {
		unicode[e.GetName()] = e.GetUnicode()
	}
	out := LeaderboardResponse{Results: make([]Emoji, 0, len(results.GetResults()))}
	for _, c := range results.GetResults() {
		out.Results = append(out.Results, Emoji{Name: c.GetChoice(), Unicode: unicode[c.GetChoice()], Votes: c.GetVotes()})
	}
	writeJSON(w, http.StatusOK, out)
}

// fail answers a failed back-end call: NOT_FOUND is the client's 404,
// INVALID_ARGUMENT its 400, anything else a 500.
func fail(w http.ResponseWriter, r *http.Request, call string, err error) {
	st := status.Convert(err)
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.InvalidArgument:
		code = http.StatusBadRequest
	}
	if code >= 500 {
		slog.Warn("back-end call failed", "path", r.URL.Path, "query", r.URL.RawQuery, "call", call, "code", st.Code().String(), "message", st.Message())
	}
	writeJSON(w, code, ErrorResponse{Error: call + ": " + st.Message()})
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(body); err != nil {
		slog.Debug("writing response", "err", err)
	}
}
