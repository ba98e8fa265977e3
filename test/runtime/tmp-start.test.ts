import "./start.suite.js";
