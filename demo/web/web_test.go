package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/demo/emoji"
	"github.com/skeinmesh/skein/demo/votebot"
	"github.com/skeinmesh/skein/demo/voting"
	"github.com/skeinmesh/skein/demo/web"
)

// startDemo runs emoji, voting and web on loopback ports and returns web's
// host:port. Everything stops, and must stop cleanly, when the test ends.
func startDemo(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 3)
	listen := func() net.Listener {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return lis
	}
	emojiLis, votingLis, webLis := listen(), listen(), listen()
	go func() { errs <- emoji.Serve(ctx, emojiLis) }()
	go func() { errs <- new(voting.Server).Serve(ctx, votingLis) }()
	cfg := web.Config{EmojiAddr: emojiLis.Addr().String(), VotingAddr: votingLis.Addr().String()}
	go func() { errs <- web.Serve(ctx, webLis, cfg) }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			if err := <-errs; err != nil {
				t.Errorf("serving: %v", err)
			}
		}
	})
	return webLis.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestAPI(t *testing.T) {
	base := "http://" + startDemo(t)

	code, body := get(t, base+"/api/list")
	var list web.ListResponse
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil {
		t.Fatalf("list: %d %s (%v)", code, body, err)
	}
	if len(list.Emoji) != len(emoji.Catalogue) || list.Emoji[0] != (web.Emoji{Name: "doughnut", Unicode: "🍩"}) {
		t.Errorf("list = %+v", list)
	}

	for _, tc := range []struct {
		query string
		code  int
		body  string
	}{
		{"choice=taco", http.StatusOK, `{"voted":"taco"}`},
		{"choice=taco", http.StatusOK, `{"voted":"taco"}`},
		{"choice=pizza", http.StatusOK, `{"voted":"pizza"}`},
		{"choice=doughnut", http.StatusInternalServerError, `{"error":"voting.Vote: doughnut is sold out"}`},
		{"choice=brussels-sprout", http.StatusNotFound, `{"error":"emoji.Find: no emoji named \"brussels-sprout\""}`},
		{"", http.StatusBadRequest, `{"error":"query parameter choice is required"}`},
	} {
		code, body := get(t, base+"/api/vote?"+tc.query)
		if code != tc.code || strings.TrimSpace(body) != tc.body {
			t.Errorf("vote %q = %d %s, want %d %s", tc.query, code, body, tc.code, tc.body)
		}
	}

	code, body = get(t, base+"/api/leaderboard")
	var board web.LeaderboardResponse
	if err := json.Unmarshal([]byte(body), &board); code != http.StatusOK || err != nil {
		t.Fatalf("leaderboard: %d %s (%v)", code, body, err)
	}
	want := []web.Emoji{{Name: "taco", Unicode: "🌮", Votes: 2}, {Name: "pizza", Unicode: "🍕", Votes: 1}}
	if len(board.Results) != len(want) || board.Results[0] != want[0] || board.Results[1] != want[1] {
		t.Errorf("leaderboard = %+v, want %+v", board.Results, want)
	}

	for _, path := range []string{"/", "/ready"} {
		if code, _ := get(t, base+path); code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, code)
		}
	}
}

// TestVoteBotFailureShare sends the bot's mix through the real services: of
// 100 votes exactly 10 fail, and nothing else does.
func TestVoteBotFailureShare(t *testing.T) {
	addr := startDemo(t)
	totals, err := votebot.Run(context.Background(), votebot.Config{Target: addr, Rate: 1000, Requests: 120, ReportInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want := votebot.Totals{
		"/api/list":        {Requests: 10},
		"/api/leaderboard": {Requests: 10},
		"/api/vote":        {Requests: 100, Failures: 10},
	}
	if len(totals) != len(want) {
		t.Errorf("totals = %v, want %v", totals, want)
	}
	for path, c := range want {
		if totals[path] != c {
			t.Errorf("totals[%s] = %+v, want %+v", path, totals[path], c)
		}
	}
}
