// The same hello through the Fetch contract.
export default { fetch: () => new Response('Hello World!', { headers: { 'Content-Type': 'text/plain' } }) };
