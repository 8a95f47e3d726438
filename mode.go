package mtlsauth

// mode is what the handler does with a request it could not authenticate.
type mode int

const (
	modeInvalid mode = iota
	modeMandatory
	modeOptional
	modeFallback
)

func parseMode(s string) mode {
	switch s {
	case "", "mandatory":
		return modeMandatory
	case "optional":
		return modeOptional
	case "fallback":
		return modeFallback
	}
	return modeInvalid
}

func (m mode) String() string {
	switch m {
	case modeMandatory:
		return "mandatory"
	case modeOptional:
		return "optional"
	case modeFallback:
		return "fallback"
	}
	return "invalid"
}

// rejects reports whether a request with this failure reason is refused.
func (m mode) rejects(r reason) bool {
	if r == reasonThrottled {
		return true // a budget applies to an authenticated identity in every mode
	}
	switch m {
	case modeFallback:
		return false
	case modeOptional:
		return !r.absent()
	}
	return true
}

// source is where the handler looks for the certificate.
type source int

const (
	sourceInvalid source = iota
	sourceHeader
	sourceTLS
	sourceAny
)

func parseSource(s string) source {
	switch s {
	case "", "header":
		return sourceHeader
	case "tls":
		return sourceTLS
	case "any":
		return sourceAny
	}
	return sourceInvalid
}
