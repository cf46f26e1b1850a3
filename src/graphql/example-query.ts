/**
 * A ready-to-paste curl command searching with a local image file, printed at startup.
 * @param image - a query image to put in the command (a held-back sample image); default a placeholder.
 */
export function exampleQuery(url: string, image = "path/to/part.jpg"): string {
  return [
    `  IMG=${image}`,
    `  curl -s ${url} -H 'content-type: application/json' \\`,
    `    --data "{\\"query\\":\\"query(\\$img:String!){searchSimilar(input:{image:{base64:\\$img},topK:5}){version tookMs hits{rank score productCode defectCode downloadUrl}}}\\",\\"variables\\":{\\"img\\":\\"$(base64 -w0 "$IMG")\\"}}"`,
    "",
    `  curl -s ${url} -H 'content-type: application/json' --data '{"query":"{status{activeVersion indexes{version imageType ready count source}}}"}'`,
  ].join("\n");
}
