package identity

// SignJoinTokenClaims lets tests sign tokens with arbitrary claims.
var SignJoinTokenClaims = signJoinToken
