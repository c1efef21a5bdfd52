package config

// Order is a stand-in until the config branch lands.
func (c *Config) Order() ([]string, error) {
	out := make([]string, 0, len(c.Probes))
	for _, p := range c.Probes {
		out = append(out, p.Name)
	}
	return out, nil
}
