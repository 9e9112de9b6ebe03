// Interoperability check with an independent MCP implementation: the official TypeScript SDK.
// Connects over HTTP+SSE (token in the URL, as Claude Desktop style configs do; and a Bearer
// header) and over Streamable HTTP, lists the tools and calls comms_ping on each.
// Usage: node check.mjs <baseUrl> <token>   (exit status 0 when every transport works)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [base, token] = process.argv.slice(2);
if (!base || !token) {
  console.error("usage: node check.mjs <baseUrl> <token>");
  process.exit(2);
}
const auth = { Authorization: `Bearer ${token}` };

async function check(name, transport) {
  const client = new Client({ name: "comms-interop-check", version: "1.0.0" }, { capabilities: {} });
  await client.connect(transport);
  const { tools } = await client.listTools();
  const ping = tools.find((tool) => tool.name === "comms_ping");
  if (!ping || ping.inputSchema.type !== "object") throw new Error(`${name}: comms_ping missing or without an object schema`);
  const result = await client.callTool({ name: "comms_ping", arguments: {} });
  if (result.isError || result.structuredContent?.status !== "ok") {
    throw new Error(`${name}: comms_ping failed: ${JSON.stringify(result)}`);
  }
  const text = result.content?.[0]?.text ?? "";
  if (JSON.parse(text).status !== "ok") throw new Error(`${name}: text rendering is not the JSON result`);
  const refused = await client.callTool({ name: "comms_no_such_tool", arguments: {} });
  if (!refused.isError || refused.structuredContent?.code !== "not_found") {
    throw new Error(`${name}: an unknown tool should be an isError result: ${JSON.stringify(refused)}`);
  }
  console.log(JSON.stringify({ transport: name, tools: tools.length, agentId: result.structuredContent.agentId }));
  await client.close();
}

try {
  await check("sse-query-token", new SSEClientTransport(new URL(`${base}/sse?token=${encodeURIComponent(token)}`)));
  await check(
    "sse-bearer",
    new SSEClientTransport(new URL(`${base}/sse`), {
      requestInit: { headers: auth },
      eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers ?? {}), ...auth } }) },
    }),
  );
  await check("streamable-http", new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: auth } }));
} catch (error) {
  console.error(error);
  process.exit(1);
}
