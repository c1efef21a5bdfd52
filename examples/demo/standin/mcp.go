package standin

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP stand-in's identity and tools, as the agent reports them (mcpClient.serverName, .tools).
const (
	MCPServerName    = "design-extraction-mcp"
	MCPServerVersion = "1.0.0"
)

// MCPTools are the tools the MCP stand-in offers, sorted.
var MCPTools = []string{"extract_page", "figma_to_code"}

// MCP is a real go-sdk MCP server speaking Streamable HTTP at /mcp.
type MCP struct {
	*Server
	calls atomic.Int64
}

// NewMCP returns the MCP stand-in. Its tools only count their calls: the agent must list them and
// never call one.
func NewMCP(addr string) *MCP {
	m := &MCP{}
	server := mcp.NewServer(&mcp.Implementation{Name: MCPServerName, Version: MCPServerVersion}, nil)
	type pageInput struct {
		URL string `json:"url" jsonschema:"the page to extract"`
	}
	type figmaInput struct {
		FileKey string `json:"fileKey" jsonschema:"the Figma file to convert"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "extract_page", Description: "Extract a web page's design tokens and layout"},
		func(context.Context, *mcp.CallToolRequest, pageInput) (*mcp.CallToolResult, any, error) {
			m.calls.Add(1)
			return nil, nil, errors.New("stand-in: not implemented")
		})
	mcp.AddTool(server, &mcp.Tool{Name: "figma_to_code", Description: "Turn a Figma frame into component code"},
		func(context.Context, *mcp.CallToolRequest, figmaInput) (*mcp.CallToolResult, any, error) {
			m.calls.Add(1)
			return nil, nil, errors.New("stand-in: not implemented")
		})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		// Sessions a client abandoned (the agent closes its own) do not pile up.
		&mcp.StreamableHTTPOptions{SessionTimeout: time.Minute})
	mux := http.NewServeMux()
	mux.Handle("/mcp", handler)
	// A stopped server forgets its sessions, as a restarted process would.
	closeSessions := func() {
		for ss := range server.Sessions() {
			_ = ss.Close()
		}
	}
	m.Server = newServer("mcp", addr, mux, closeSessions)
	return m
}

// ToolCalls is how many tool calls the server received.
func (m *MCP) ToolCalls() int64 { return m.calls.Load() }
