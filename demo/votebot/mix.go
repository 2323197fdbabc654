package votebot

import "strings"

// Cycle is the sequence of requests the bot sends, over and over: 12
// requests, of which 10 are votes and exactly one of those votes is for
// "doughnut", the choice the voting service always refuses (voting.SoldOut).
// So, exactly, per full cycle and hence in any long window:
//
//   - GET /api/vote fails 1 time in 10 (10%), with a 500 from web and
//     gRPC UNKNOWN from voting.Vote;
//   - web as a whole fails 1 request in 12 (8.3%);
//   - the voting service fails 1 call in 11 (9.1%: 10 Vote, 1 Results);
//   - the emoji service never fails (10 Find, 2 List).
//
// The last vote of the cycle is the failing one, so the first N requests
// include floor(N/12) failures: 120 requests have exactly 10.
var Cycle = []string{
	"/api/list",
	"/api/vote?choice=taco",
	"/api/vote?choice=pizza",
	"/api/vote?choice=taco",
	"/api/vote?choice=sushi",
	"/api/vote?choice=ramen",
	"/api/leaderboard",
	"/api/vote?choice=taco",
	"/api/vote?choice=pizza",
	"/api/vote?choice=croissant",
	"/api/vote?choice=dumpling",
	"/api/vote?choice=doughnut",
}

// Request returns the path and query of the i-th request (from 0).
func Request(i int) string { return Cycle[i%len(Cycle)] }

// pathOf is a request's path without its query: the key of Totals.
func pathOf(request string) string {
	path, _, _ := strings.Cut(request, "?")
	return path
}
