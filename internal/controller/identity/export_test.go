package identity

// SignJoinTokenClaims lets tests sign tokens with arbitrary claims.
var SignJoinTokenClaims = signJoinToken

// SetMaxUsedJoinTokens changes how many one-shot token IDs j remembers.
func SetMaxUsedJoinTokens(j *JoinTokens, n int) { j.used.max = n }
