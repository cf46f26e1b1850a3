// GraphiQL 3 from npm (UMD), served by the service itself: works with no CDN on air-gapped machines.
const fetcher = GraphiQL.createFetcher({ url: "/graphql" });
const defaultQuery = `# defect-lens: similarity search over defect images.
# Query images go as multipart uploads (the web app at /) or base64; try searchSimilar with galleryImageId.
query Status {
  status { activeVersion indexes { version imageType ready count factory } }
  products { productCode productName imageCount }
}
`;
ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, { fetcher, defaultQuery }),
);
