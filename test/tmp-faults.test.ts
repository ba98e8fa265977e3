import "./local/faults.suite.js";
