/**
 * Ready-to-paste curl commands printed at startup: a search uploading a local image file as a GraphQL
 * multipart request (no base64), and a status query.
 * @param graphqlUrl - e.g. `http://127.0.0.1:4000/graphql`
 * @param image - a query image to put in the command (a held-back sample image); default a placeholder.
 */
export function exampleQuery(graphqlUrl: string, image = "path/to/part.jpg"): string {
  return [
    `  IMG=${image}`,
    `  curl -s ${graphqlUrl} -H 'Apollo-Require-Preflight: true' \\`,
    `    -F operations='{"query":"query($f:Upload!){searchSimilar(input:{image:{file:$f},topK:5}){version tookMs hits{rank score productCode defectCode downloadUrl}}}","variables":{"f":null}}' \\`,
    `    -F map='{"0":["variables.f"]}' -F 0=@"$IMG"`,
    "",
    `  curl -s ${graphqlUrl} -H 'content-type: application/json' --data '{"query":"{status{activeVersion indexes{version imageType ready count source}}}"}'`,
  ].join("\n");
}
