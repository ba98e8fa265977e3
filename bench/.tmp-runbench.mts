import b from "./start.bench.ts"; console.log(JSON.stringify(await b.run(), null, 1));
